//! A request body handed to the connection in chunks, telling a watcher how much has gone:
//! a deploy's archive shows its progress over a slow link (SSH) as it is sent.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// Told `(sent, total)` bytes each time a chunk is taken by the connection.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Small enough that progress moves on a slow link, large enough to cost nothing on a fast one.
const CHUNK: usize = 256 * 1024;

pub struct Upload {
    rest: Bytes,
    total: u64,
    progress: Option<Progress>,
}

impl Upload {
    pub fn new(body: Bytes, progress: Option<Progress>) -> Upload {
        Upload {
            total: body.len() as u64,
            rest: body,
            progress,
        }
    }
}

impl hyper::body::Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(CHUNK);
        let chunk = self.rest.split_to(n);
        if let Some(progress) = &self.progress {
            progress(self.total - self.rest.len() as u64, self.total);
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}
