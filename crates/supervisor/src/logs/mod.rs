//! Captured logs: the line format ([`LogLine`]), the writer with size rotation, and reading
//! back ([`read`], [`follow`]).
//!
//! Layout: `LOG_ROOT/APP/SERVICE/current.log`, rotated to `current.log.1` (newest) ..
//! `current.log.N` (oldest, N = `log_keep`). One line per captured line:
//!
//! ```text
//! 2026-11-22T05:01:18.123Z web.0@20261122-050100 out | listening on 127.0.0.1:4001
//! ```
//!
//! Timestamps are UTC, millisecond precision. Lines longer than [`MAX_LINE`] bytes are cut and
//! marked with ` [cut]`; invalid UTF-8 is replaced.
//!
//! [`read`] is blocking file IO (call it from `spawn_blocking` in async code). [`follow`] polls
//! the files every 200 ms on its own thread and hands lines over a channel; it survives
//! rotation: it keeps the open file, drains it, reads any files rotated since (by inode), then
//! switches to the new `current.log`. Lines dropped by `log_keep` before a poll are lost.

mod files;
mod line;
mod read;
mod writer;

pub use line::{LogLine, MAX_LINE, Stream, format_time, parse_line, parse_time};
pub(crate) use line::{Record, label};
pub use read::{follow, read};
pub(crate) use writer::spawn_writer;
