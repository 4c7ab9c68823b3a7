//! One log line: its on-disk text and its parsed form.
//!
//! ```text
//! 2026-11-22T05:01:18.123Z web.0@20261122-050100 out | listening on 127.0.0.1:4001
//! ```
//!
//! Timestamps are RFC 3339 in UTC with exactly three fractional digits (milliseconds,
//! truncated).

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Longest line kept, in bytes; the rest is cut.
pub const MAX_LINE: usize = 16 * 1024;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

impl Stream {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: SystemTime,
    pub service: String,
    pub instance: u32,
    pub release: String,
    pub stream: Stream,
    pub text: String,
}

impl fmt::Display for LogLine {
    /// The same format as on disk (without the newline).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{}@{} {} | {}",
            format_time(self.time),
            self.service,
            self.instance,
            self.release,
            self.stream.as_str(),
            self.text
        )
    }
}

/// A line on its way from a child's pipe to the writer.
#[derive(Debug)]
pub(crate) struct Record {
    pub time: SystemTime,
    /// `service.instance@release`
    pub label: Arc<str>,
    pub stream: Stream,
    pub text: String,
}

/// `SERVICE.INSTANCE@RELEASE`, with whitespace in the release replaced so lines stay parseable.
pub(crate) fn label(service: &str, instance: u32, release: &str) -> String {
    let release: String = release
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    format!("{service}.{instance}@{release}")
}

/// Parse one on-disk line; `None` for anything that is not in the format.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let (ts, rest) = line.split_once(' ')?;
    let (label, rest) = rest.split_once(' ')?;
    let (stream, text) = rest.split_once(" | ")?;
    let stream = match stream {
        "out" => Stream::Out,
        "err" => Stream::Err,
        _ => return None,
    };
    let (svc_inst, release) = label.split_once('@')?;
    let (service, instance) = svc_inst.rsplit_once('.')?;
    Some(LogLine {
        time: parse_time(ts)?,
        service: service.to_owned(),
        instance: instance.parse().ok()?,
        release: release.to_owned(),
        stream,
        text: text.to_owned(),
    })
}

/// The timestamp format, `2026-11-22T05:01:18.123Z`.
const TIME: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// `2026-11-22T05:01:18.123Z`. Times before 1970 print as 1970, after 9999 as 9999.
pub fn format_time(t: SystemTime) -> String {
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let utc = i128::try_from(since_epoch.as_nanos())
        .ok()
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc());
    utc.format(TIME)
        .expect("a UTC time within years 0..=9999 has every component TIME needs")
}

/// Inverse of [`format_time`]; `None` for anything else.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let utc = PrimitiveDateTime::parse(s, TIME).ok()?.assume_utc();
    Some(utc.into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn time_round_trips() {
        let check = |secs: u64, ms: u64, text: &str| {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms);
            assert_eq!(format_time(t), text);
            assert_eq!(parse_time(text), Some(t));
        };
        check(0, 0, "1970-01-01T00:00:00.000Z");
        check(951_782_400, 5, "2000-02-29T00:00:00.005Z");
        check(1_795_323_678, 123, "2026-11-22T05:01:18.123Z");
        check(4_107_542_399, 999, "2100-02-28T23:59:59.999Z");
        // Milliseconds are truncated; times before 1970 print as 1970.
        let t = UNIX_EPOCH + Duration::from_nanos(1_999_999_999);
        assert_eq!(format_time(t), "1970-01-01T00:00:01.999Z");
        let t = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format_time(t), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_time("2026-13-22T05:01:18.123Z"), None);
        assert_eq!(parse_time("2026-11-22T05:01:18.12Z"), None);
        assert_eq!(parse_time("2026-11-22T05:01:18.123Z "), None);
        assert_eq!(parse_time("2026-11-22 05:01:18.123Z"), None);
    }

    #[test]
    fn lines_parse() {
        let l = parse_line("2026-11-22T05:01:18.123Z web.0@r-1 err | a | b").unwrap();
        assert_eq!(
            (l.service.as_str(), l.instance, l.release.as_str()),
            ("web", 0, "r-1")
        );
        assert_eq!((l.stream, l.text.as_str()), (Stream::Err, "a | b"));
        assert_eq!(
            l.to_string(),
            "2026-11-22T05:01:18.123Z web.0@r-1 err | a | b"
        );
        assert_eq!(
            parse_line("2026-11-22T05:01:18.123Z web.0@r out | ")
                .unwrap()
                .text,
            ""
        );
        assert!(parse_line("garbage").is_none());
        assert!(parse_line("2026-11-22T05:01:18.123Z web@r out | x").is_none());
    }
}
