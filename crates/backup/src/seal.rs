//! The byte pipeline: plain bytes in, stored bytes out, and back.
//!
//! Sealing: `source → zstd (multithreaded) → age (to the recipient) → sha256 + count → sink`.
//! Opening: `stored bytes → sha256 + count → age (with the identity) → zstd → sink`.
//! Everything streams through fixed buffers; nothing holds a whole backup.

use std::io::{self, Read, Write};

use age::x25519::{Identity, Recipient};
use sha2::{Digest, Sha256};

/// zstd level: the `zstd` command's default, which the benchmark compares against.
const ZSTD_LEVEL: i32 = 3;
/// zstd's jobs are this large (and about this much memory per worker).
const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// A writer that hashes and counts what passes through it.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The sha256 (lowercase hex) and length of everything written or read, and the inner
    /// writer or reader.
    pub fn finish(self) -> (String, u64, W) {
        (hex::encode(self.hasher.finalize()), self.bytes, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// What sealing produced: the stored object's sha256 and size, and the plain size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub sha256: String,
    pub stored_bytes: u64,
    pub plain_bytes: u64,
}

/// A writer that compresses, encrypts and hashes into `sink`. Call [`Sealer::finish`]; a sealer
/// dropped unfinished leaves a truncated stream that no one can open.
pub struct Sealer<W: Write> {
    zstd: zstd::stream::write::Encoder<'static, age::stream::StreamWriter<Hashing<W>>>,
    plain: u64,
}

impl<W: Write> Sealer<W> {
    pub fn new(sink: W, recipient: &Recipient) -> io::Result<Sealer<W>> {
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .map_err(io::Error::other)?;
        let age = encryptor.wrap_output(Hashing::new(sink))?;
        let mut zstd = zstd::stream::write::Encoder::new(age, ZSTD_LEVEL)?;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        zstd.multithread(workers)?;
        zstd.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
        Ok(Sealer { zstd, plain: 0 })
    }

    /// Flushes every stage and returns the figures and the sink.
    pub fn finish(self) -> io::Result<(Sealed, W)> {
        let age = self.zstd.finish()?;
        let hashing = age.finish()?;
        let (sha256, stored_bytes, sink) = hashing.finish();
        Ok((
            Sealed {
                sha256,
                stored_bytes,
                plain_bytes: self.plain,
            },
            sink,
        ))
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.zstd.write(buf)?;
        self.plain += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.zstd.flush()
    }
}

/// Why stored bytes could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("this backup was not encrypted to the key given (wrong key): {0}")]
    WrongKey(String),
    #[error("the stored bytes are damaged: {0}")]
    Damaged(String),
}

/// Opens the header of a sealed stream: fails at once on a wrong key. The reader is then
/// decrypted and decompressed as it is read.
pub fn open<R: Read>(stored: R, identity: &Identity) -> Result<impl Read, OpenError> {
    let decryptor =
        age::Decryptor::new(stored).map_err(|e| OpenError::Damaged(format!("age header: {e}")))?;
    let plain = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => OpenError::WrongKey(e.to_string()),
            e => OpenError::Damaged(e.to_string()),
        })?;
    zstd::stream::read::Decoder::new(plain).map_err(|e| OpenError::Damaged(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_gives_the_bytes_back() {
        let identity = Identity::generate();
        let plain: Vec<u8> = (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut sealer = Sealer::new(Vec::new(), &identity.to_public()).unwrap();
        sealer.write_all(&plain).unwrap();
        let (sealed, stored) = sealer.finish().unwrap();
        assert_eq!(sealed.plain_bytes, plain.len() as u64);
        assert_eq!(sealed.stored_bytes, stored.len() as u64);
        assert_eq!(sealed.sha256, hex::encode(Sha256::digest(&stored)));
        assert!(stored.len() < plain.len() / 4, "compressed");

        let mut back = Vec::new();
        open(&stored[..], &identity)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, plain);

        let other = Identity::generate();
        assert!(matches!(
            open(&stored[..], &other),
            Err(OpenError::WrongKey(_))
        ));

        let mut flipped = stored.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 1;
        let mut out = Vec::new();
        let err = open(&flipped[..], &identity).and_then(|mut r| {
            r.read_to_end(&mut out)
                .map_err(|e| OpenError::Damaged(e.to_string()))
        });
        assert!(
            err.is_err(),
            "a flipped byte is caught by age's authentication"
        );
    }
}
