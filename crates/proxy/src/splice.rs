//! A spliced WebSocket: the client's and the instance's upgraded streams copied both ways,
//! with each direction's frame boundaries followed (headers only: payloads pass through as
//! they come, nothing is buffered beyond one read), so berth can end it the WebSocket way.
//!
//! When berth has to cut a WebSocket (an instance's drain grace is over, or the proxy's
//! shutdown grace), each direction first lets the frame in flight finish, then berth puts a
//! close frame with status 1001 (going away) at that boundary: to the client unmasked, as a
//! server sends it, and to the instance masked, as a client must. A control frame may stand
//! between the fragments of a message (RFC 6455 section 5.4), so a boundary is enough. A
//! direction that already carried a close frame gets none from berth. Then each side gets a
//! FIN, and the WebSocket counts as closed (the caller's `open` guard is dropped, so a drain
//! can end). What the sides still send (their own close frames) is read and dropped until they
//! close: closing a socket with unread data makes the kernel send a reset, which can overtake
//! the close frame. All of this ends within [`CLOSE_WINDOW`]; a frame that does not finish by
//! then (an instance stalled mid-frame, a client that stopped reading) is cut without a close
//! frame, since one inside a frame would corrupt the stream.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long closing a cut WebSocket may take (finishing the frame in flight included).
pub(crate) const CLOSE_WINDOW: Duration = Duration::from_secs(2);

/// Bytes read from one side at a time.
const CHUNK: usize = 16 * 1024;

/// Close frame, status 1001, as a server sends it (unmasked).
const CLOSE_TO_CLIENT: [u8; 4] = [0x88, 0x02, 0x03, 0xe9];

/// How a splice ended when berth cut it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Cut<R> {
    /// What the `cut` future said.
    pub reason: R,
    /// The client got berth's close frame (or had one from the instance already).
    pub client_closed: bool,
}

/// Copy both ways until either side closes (`None`), or `cut` resolves; then close both sides
/// as the module doc says and return how. `open` is dropped as soon as neither side will get
/// another byte.
pub(crate) async fn splice<C, U, R>(
    client: C,
    instance: U,
    cut: impl Future<Output = R>,
    open: impl Sized,
) -> Option<Cut<R>>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut up_rd, mut up_wr) = tokio::io::split(instance);
    let mut down = Pipe::new();
    let mut up = Pipe::new();
    // Both copies are cancel-safe: whatever one has read but not written stays in its pipe.
    let reason = tokio::select! {
        _ = down.copy(&mut up_rd, &mut client_wr) => return None,
        _ = up.copy(&mut client_rd, &mut up_wr) => return None,
        reason = cut => reason,
    };
    let deadline = tokio::time::Instant::now() + CLOSE_WINDOW;
    let to_instance = close_to_instance(mask_key());
    let closing = async {
        tokio::join!(
            down.close(&mut up_rd, &mut client_wr, &CLOSE_TO_CLIENT),
            up.close(&mut client_rd, &mut up_wr, &to_instance),
        )
    };
    let _ = tokio::time::timeout_at(deadline, closing).await;
    drop(open);
    let lingering = async { tokio::join!(down.linger(&mut up_rd), up.linger(&mut client_rd)) };
    let _ = tokio::time::timeout_at(deadline, lingering).await;
    Some(Cut {
        reason,
        client_closed: down.frames.closed,
    })
}

/// One direction: bytes read and not yet written, and where the stream stands in its frames.
struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    frames: Frames,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buf: vec![0; CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            frames: Frames::default(),
        }
    }

    /// Read one chunk into the empty buffer; `false` at the end of the stream.
    async fn fill(&mut self, rd: &mut (impl AsyncRead + Unpin)) -> io::Result<bool> {
        debug_assert_eq!(self.start, self.end);
        let n = rd.read(&mut self.buf).await?;
        (self.start, self.end) = (0, n);
        Ok(n > 0)
    }

    /// Write buffered bytes, at most `limit`; the frames follow what was written.
    async fn write_some(
        &mut self,
        wr: &mut (impl AsyncWrite + Unpin),
        limit: usize,
    ) -> io::Result<()> {
        let pending = &self.buf[self.start..self.end];
        let n = wr.write(&pending[..limit.min(pending.len())]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.frames.advance(&pending[..n], false);
        self.start += n;
        if self.start == self.end {
            wr.flush().await?;
        }
        Ok(())
    }

    /// Copy until the source ends (then the destination gets a FIN) or fails. Cancel-safe: a
    /// read or write that did not complete moved nothing.
    async fn copy(
        &mut self,
        rd: &mut (impl AsyncRead + Unpin),
        wr: &mut (impl AsyncWrite + Unpin),
    ) -> io::Result<()> {
        loop {
            if self.start == self.end && !self.fill(rd).await? {
                return wr.shutdown().await;
            }
            self.write_some(wr, usize::MAX).await?;
        }
    }

    /// After a cut: the rest of the frame in flight, then `close` unless a close frame already
    /// went this way, and a FIN.
    async fn close(
        &mut self,
        rd: &mut (impl AsyncRead + Unpin),
        wr: &mut (impl AsyncWrite + Unpin),
        close: &[u8],
    ) -> io::Result<()> {
        while !self.frames.at_boundary() {
            if self.start == self.end && !self.fill(rd).await? {
                // The source ended inside a frame: no boundary will come.
                return wr.shutdown().await;
            }
            let mut probe = self.frames;
            let to_boundary = probe.advance(&self.buf[self.start..self.end], true);
            self.write_some(wr, to_boundary).await?;
        }
        if !self.frames.closed {
            wr.write_all(close).await?;
            wr.flush().await?;
            self.frames.closed = true;
        }
        wr.shutdown().await
    }

    /// Read and drop what the source still sends, until it ends.
    async fn linger(&mut self, rd: &mut (impl AsyncRead + Unpin)) -> io::Result<()> {
        self.start = self.end;
        while self.fill(rd).await? {
            self.start = self.end;
        }
        Ok(())
    }
}

/// Where one direction of a WebSocket stands in its sequence of frames (RFC 6455 section
/// 5.2): a frame header is 2 bytes, then 2 or 8 bytes of extended length, then 4 bytes of
/// masking key if the mask bit is set; the payload follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Frames {
    /// The header of the next frame, as far as it has been seen.
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload: u64,
    /// A close frame went this way.
    closed: bool,
}

const OP_CLOSE: u8 = 0x8;

impl Frames {
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload == 0
    }

    /// Follows `data`; with `stop`, only up to the first frame end it reaches. Returns the
    /// bytes followed.
    fn advance(&mut self, data: &[u8], stop: bool) -> usize {
        let mut i = 0;
        while i < data.len() {
            if self.payload > 0 {
                let n = self.payload.min((data.len() - i) as u64);
                self.payload -= n;
                i += n as usize;
            } else {
                self.head[self.have] = data[i];
                self.have += 1;
                i += 1;
                self.header_byte();
            }
            if stop && self.at_boundary() {
                break;
            }
        }
        i
    }

    /// A header byte arrived: when the header is complete, start its payload.
    fn header_byte(&mut self) {
        if self.have < 2 {
            return;
        }
        let len7 = self.head[1] & 0x7f;
        let extended = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        if self.have < 2 + extended + mask {
            return;
        }
        self.payload = match extended {
            0 => u64::from(len7),
            2 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            _ => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or([0; 8])),
        };
        if self.head[0] & 0x0f == OP_CLOSE {
            self.closed = true;
        }
        self.have = 0;
    }
}

/// A masking key no one can predict (RFC 6455 section 5.3): std's hasher keys are random per
/// process and change with every `RandomState`.
fn mask_key() -> [u8; 4] {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let [a, b, c, d, ..] = bits.to_le_bytes();
    [a, b, c, d]
}

/// Close frame, status 1001, as a client sends it (masked with `key`).
fn close_to_instance(key: [u8; 4]) -> [u8; 8] {
    let [hi, lo] = 1001u16.to_be_bytes();
    let [k0, k1, k2, k3] = key;
    [0x88, 0x82, k0, k1, k2, k3, hi ^ k0, lo ^ k1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame boundaries (offsets after each frame end) of `data` fed in pieces of `step`.
    fn boundaries(data: &[u8], step: usize) -> Vec<usize> {
        let mut f = Frames::default();
        let mut out = Vec::new();
        let mut pos = 0;
        for piece in data.chunks(step) {
            let mut at = 0;
            while at < piece.len() {
                at += f.advance(&piece[at..], true);
                if f.at_boundary() {
                    out.push(pos + at);
                }
            }
            pos += piece.len();
        }
        out
    }

    fn frame(first: u8, masked: bool, len: usize) -> Vec<u8> {
        let mut v = vec![first];
        let m = if masked { 0x80 } else { 0 };
        match len {
            0..=125 => v.push(m | len as u8),
            126..=0xffff => {
                v.push(m | 126);
                v.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                v.push(m | 127);
                v.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            v.extend_from_slice(&[1, 2, 3, 4]);
        }
        v.extend(std::iter::repeat_n(b'x', len));
        v
    }

    #[test]
    fn boundaries_of_every_length_form_in_any_pieces() {
        let frames = [
            frame(0x81, false, 5),      // text, 7-bit length
            frame(0x02, false, 300),    // binary, first fragment, 16-bit length
            frame(0x89, false, 0),      // ping between fragments, empty
            frame(0x80, false, 70_000), // last fragment, 64-bit length
            frame(0x81, true, 126),     // masked (client) text
            frame(0x82, true, 65_536),  // masked, 64-bit length
        ];
        let data: Vec<u8> = frames.concat();
        let mut expected = Vec::new();
        let mut end = 0;
        for f in &frames {
            end += f.len();
            expected.push(end);
        }
        for step in [1, 2, 3, 7, 14, 1000, data.len()] {
            assert_eq!(boundaries(&data, step), expected, "pieces of {step}");
        }
    }

    #[test]
    fn close_frames_are_noticed() {
        let mut f = Frames::default();
        f.advance(&frame(0x81, false, 3), false);
        assert!(!f.closed);
        f.advance(&CLOSE_TO_CLIENT, false);
        assert!(f.closed && f.at_boundary());
        let mut f = Frames::default();
        let to_instance = close_to_instance([9, 8, 7, 6]);
        assert_eq!(f.advance(&to_instance, false), 8);
        assert!(f.closed && f.at_boundary());
        let [hi, lo] = [to_instance[6] ^ 9, to_instance[7] ^ 8];
        assert_eq!(u16::from_be_bytes([hi, lo]), 1001);
    }

    #[test]
    fn mask_keys_differ() {
        assert_ne!(mask_key(), mask_key());
    }
}
