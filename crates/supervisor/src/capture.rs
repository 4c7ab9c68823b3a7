//! A child's stdout and stderr, line by line, into its service's log and the instance's tail.
//!
//! One reader task per pipe; each ends at EOF. Lines longer than [`logs::MAX_LINE`] are cut and
//! marked ` [cut]`, a trailing `\r` is dropped, invalid UTF-8 is replaced. A reader keeps
//! draining its pipe when the log writer is gone, so the child never blocks on a full pipe.
//! The pipes are FIFOs that outlive the daemon (`pipes.rs`). When the instance is handed to
//! the next daemon, each reader stops at a line boundary: what it has read, it logs, and the
//! next daemon reads on from the next line.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::logs::{self, Record, Stream};
use crate::pipes::ReadEnds;

/// Lines kept in memory per instance for [`crate::StartFailure::log_tail`].
const TAIL_LINES: usize = 20;
/// How long to wait for the pipes to drain after the process exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// On a hand-over, how long a line the child is in the middle of writing may take to end;
/// after that its first part is logged marked ` [split]`, and the next daemon logs the rest.
const LINE_GRACE: Duration = Duration::from_millis(200);

/// The last lines an instance printed, oldest first, as `out | text` / `err | text`.
#[derive(Debug)]
pub(crate) struct Tail(Mutex<VecDeque<String>>);

impl Tail {
    pub(crate) fn new() -> Tail {
        Tail(Mutex::new(VecDeque::with_capacity(TAIL_LINES)))
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }

    fn push(&self, line: String) {
        let mut t = self.0.lock().unwrap();
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// The reader tasks of one child, and the signal that stops them at a line boundary.
pub(crate) struct Readers(Vec<JoinHandle<()>>, CancellationToken);

/// Start reading the instance's stdout and stderr pipes; lines are logged under `label`
/// (`service.instance@release`).
pub(crate) fn start(
    ends: ReadEnds,
    label: Arc<str>,
    tail: &Arc<Tail>,
    log: &mpsc::Sender<Record>,
) -> Readers {
    let stop = CancellationToken::new();
    let read = |pipe, stream| {
        let sink = Sink {
            stream,
            label: label.clone(),
            tail: tail.clone(),
            tx: log.clone(),
        };
        tokio::spawn(read_lines(pipe, sink, stop.clone()))
    };
    Readers(
        vec![read(ends.out, Stream::Out), read(ends.err, Stream::Err)],
        stop,
    )
}

impl Readers {
    /// Stop reading at the next line boundary (the instance is handed to another daemon,
    /// which reads on from the same pipes): every byte read is logged, a line in the middle
    /// of being written gets [`LINE_GRACE`] to end.
    pub(crate) async fn stop(mut self) {
        self.1.cancel();
        let all = futures_util::future::join_all(self.0.iter_mut());
        if tokio::time::timeout(2 * LINE_GRACE, all).await.is_err() {
            // A reader stuck on a full log channel: what it holds is lost, nothing more.
            for r in &self.0 {
                r.abort();
            }
        }
    }

    /// Wait (briefly: grandchildren may hold the pipes open) until the readers saw EOF.
    pub(crate) async fn drain(self) {
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, async {
            for r in self.0 {
                let _ = r.await;
            }
        })
        .await;
    }
}

/// Where one pipe's lines go.
struct Sink {
    stream: Stream,
    label: Arc<str>,
    tail: Arc<Tail>,
    tx: mpsc::Sender<Record>,
}

impl Sink {
    async fn line(&self, line: &mut Vec<u8>, cut: &mut bool, mark: &str) {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let mut text = String::from_utf8_lossy(line).into_owned();
        if *cut {
            text.push_str(" [cut]");
        }
        text.push_str(mark);
        line.clear();
        *cut = false;
        let out = if self.stream == Stream::Out {
            "out"
        } else {
            "err"
        };
        self.tail.push(format!("{out} | {text}"));
        let rec = Record {
            time: SystemTime::now(),
            label: self.label.clone(),
            stream: self.stream,
            text,
        };
        if self.tx.send(rec).await.is_err() {
            // Writer gone: keep draining the pipe so the child never blocks on it.
        }
    }
}

async fn read_lines(pipe: impl AsyncRead + Unpin, sink: Sink, stop: CancellationToken) {
    let mut reader = BufReader::with_capacity(logs::MAX_LINE, pipe);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    // Set when the stop is first seen: the end of the grace for a line in progress.
    let mut until = None;
    loop {
        let boundary = line.is_empty() && reader.buffer().is_empty();
        let filled = if stop.is_cancelled() {
            if boundary {
                return;
            }
            let until = *until.get_or_insert_with(|| tokio::time::Instant::now() + LINE_GRACE);
            match tokio::time::timeout_at(until, reader.fill_buf()).await {
                Ok(filled) => filled,
                Err(_) => {
                    // The line does not end in time: its first part here, the rest is the
                    // next daemon's first line.
                    sink.line(&mut line, &mut cut, " [split]").await;
                    return;
                }
            }
        } else {
            tokio::select! {
                filled = reader.fill_buf() => filled,
                // Stop at this boundary, or after the line in progress.
                () = stop.cancelled() => continue,
            }
        };
        let (done, used, eof) = match filled {
            Err(_) => (!line.is_empty(), 0, true),
            Ok([]) => (!line.is_empty(), 0, true),
            Ok(buf) => {
                let (chunk, done, used) = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (&buf[..i], true, i + 1),
                    None => (buf, false, buf.len()),
                };
                let room = logs::MAX_LINE.saturating_sub(line.len());
                if chunk.len() > room {
                    cut = true;
                }
                line.extend_from_slice(&chunk[..chunk.len().min(room)]);
                (done, used, false)
            }
        };
        reader.consume(used);
        if done {
            sink.line(&mut line, &mut cut, "").await;
        }
        if eof {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn lines(rx: &mut mpsc::Receiver<Record>) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(r) = rx.try_recv() {
            v.push(r.text);
        }
        v
    }

    #[tokio::test]
    async fn a_hand_over_stops_at_a_line_boundary_and_loses_nothing() {
        let (mut child, pipe) = tokio::io::duplex(4096);
        let (tx, mut rx) = mpsc::channel(16);
        let tail = Arc::new(Tail::new());
        let stop = CancellationToken::new();
        let sink = |stream| Sink {
            stream,
            label: "web.0@r1".into(),
            tail: tail.clone(),
            tx: tx.clone(),
        };
        let task = tokio::spawn(read_lines(pipe, sink(Stream::Out), stop.clone()));
        child.write_all(b"one\nhalf a li").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let readers = Readers(vec![task], stop);
        let stopping = tokio::spawn(readers.stop());
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The line ends within the grace: logged whole, and the reader stops after it.
        child.write_all(b"ne\n").await.unwrap();
        stopping.await.unwrap();
        assert_eq!(lines(&mut rx).await, ["one", "half a line"]);

        // A line that does not end in time: its first part, marked.
        let (mut child, pipe) = tokio::io::duplex(4096);
        let stop = CancellationToken::new();
        let task = tokio::spawn(read_lines(pipe, sink(Stream::Err), stop.clone()));
        child.write_all(b"no end").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        Readers(vec![task], stop).stop().await;
        assert_eq!(lines(&mut rx).await, ["no end [split]"]);
    }
}
