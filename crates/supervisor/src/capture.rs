//! A child's stdout and stderr, line by line, into its service's log and the instance's tail.
//!
//! One reader task per pipe; each ends at EOF. Lines longer than [`logs::MAX_LINE`] are cut and
//! marked ` [cut]`, a trailing `\r` is dropped, invalid UTF-8 is replaced. A reader keeps
//! draining its pipe when the log writer is gone, so the child never blocks on a full pipe.
//! The pipes are FIFOs that outlive the daemon (`pipes.rs`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::logs::{self, Record, Stream};
use crate::pipes::ReadEnds;

/// Lines kept in memory per instance for [`crate::StartFailure::log_tail`].
const TAIL_LINES: usize = 20;
/// How long to wait for the pipes to drain after the process exited.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

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

/// The reader tasks of one child.
pub(crate) struct Readers(Vec<JoinHandle<()>>);

/// Start reading the instance's stdout and stderr pipes; lines are logged under `label`
/// (`service.instance@release`).
pub(crate) fn start(
    ends: ReadEnds,
    label: Arc<str>,
    tail: &Arc<Tail>,
    log: &mpsc::Sender<Record>,
) -> Readers {
    let read = |pipe, stream| {
        tokio::spawn(read_lines(
            pipe,
            stream,
            label.clone(),
            tail.clone(),
            log.clone(),
        ))
    };
    Readers(vec![
        read(ends.out, Stream::Out),
        read(ends.err, Stream::Err),
    ])
}

impl Readers {
    /// Stop reading now (the instance is handed to another daemon, which reads on from the
    /// same pipes). Part of a line already read and not yet ended is dropped.
    pub(crate) fn abort(self) {
        for r in self.0 {
            r.abort();
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

async fn read_lines(
    pipe: impl AsyncRead + Unpin,
    stream: Stream,
    label: Arc<str>,
    tail: Arc<Tail>,
    tx: mpsc::Sender<Record>,
) {
    let mut reader = BufReader::with_capacity(logs::MAX_LINE, pipe);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let (done, used, eof) = match reader.fill_buf().await {
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
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let mut text = String::from_utf8_lossy(&line).into_owned();
            if cut {
                text.push_str(" [cut]");
            }
            line.clear();
            cut = false;
            tail.push(format!(
                "{} | {text}",
                if stream == Stream::Out { "out" } else { "err" }
            ));
            let rec = Record {
                time: SystemTime::now(),
                label: label.clone(),
                stream,
                text,
            };
            if tx.send(rec).await.is_err() {
                // Writer gone: keep draining the pipe so the child never blocks on it.
            }
        }
        if eof {
            return;
        }
    }
}
