//! The access log: one JSON line per request, written by its own thread.
//!
//! The hot path formats the line into a per-thread buffer; a writer thread writes the buffers
//! out. When the writer falls behind, lines are dropped and counted rather than slowing requests.

use std::io::{self, Write};
use std::num::NonZeroU8;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, Uri};
use time::OffsetDateTime;
use time::format_description::well_known::Iso8601;
use time::format_description::well_known::iso8601::{Config, EncodedConfig, TimePrecision};

use crate::config::AccessLog;

/// What is known about one finished request.
pub(crate) struct Entry<'a> {
    pub time: SystemTime,
    pub request_id: &'a HeaderValue,
    /// The client address as text (see `forward::ClientAddr`).
    pub client: &'a [u8],
    pub host: Option<&'a HeaderValue>,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub status: u16,
    pub bytes: u64,
    pub duration: Duration,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub error: Option<&'static str>,
}

/// Lines waiting in one shard before new ones are dropped (the writer has fallen behind).
const SHARD_CAP: usize = 4 * 1024 * 1024;
const SHARDS: usize = 8;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
}

/// Lines are formatted on the request's own thread into that thread's shard buffer (no
/// cross-thread allocation, no wake-up); the writer thread swaps the buffers out every few
/// milliseconds and writes them with one call each.
#[derive(Clone)]
pub(crate) struct Sender {
    shards: Arc<[Mutex<Vec<u8>>]>,
}

impl Sender {
    /// Append one line; `false` when it was dropped.
    pub fn send(&self, entry: &Entry) -> bool {
        let shard = SHARD.with(|s| *s);
        let mut buf = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if buf.len() > SHARD_CAP {
            return false;
        }
        format_entry(&mut buf, entry);
        true
    }
}

/// Start the writer thread; `None` when the log is off.
pub(crate) fn start(dest: &AccessLog) -> io::Result<Option<Sender>> {
    let out: Box<dyn Write + Send> = match dest {
        AccessLog::Off => return Ok(None),
        AccessLog::Stdout => Box::new(io::stdout()),
        AccessLog::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    };
    let shards: Arc<[Mutex<Vec<u8>>]> = (0..SHARDS)
        .map(|_| Mutex::new(Vec::with_capacity(64 * 1024)))
        .collect();
    let theirs = shards.clone();
    std::thread::Builder::new()
        .name("berth-access-log".into())
        .spawn(move || writer(&theirs, out))?;
    Ok(Some(Sender { shards }))
}

/// Every 20 ms while busy (every 250 ms while idle), write out what the shards hold; exit
/// once the proxy is gone.
fn writer(shards: &Arc<[Mutex<Vec<u8>>]>, mut out: Box<dyn Write + Send>) {
    let mut spare = Vec::with_capacity(64 * 1024);
    let mut pause = Duration::from_millis(20);
    loop {
        let last = Arc::strong_count(shards) == 1;
        let mut wrote = false;
        for shard in shards.iter() {
            {
                let mut buf = shard.lock().unwrap_or_else(PoisonError::into_inner);
                if buf.is_empty() {
                    continue;
                }
                std::mem::swap(&mut *buf, &mut spare);
            }
            // Nowhere to write (disk full, closed stdout): the lines are lost, requests go on.
            let _ = out.write_all(&spare);
            spare.clear();
            wrote = true;
        }
        if wrote {
            let _ = out.flush();
        }
        if last {
            return;
        }
        pause = if wrote {
            Duration::from_millis(20)
        } else {
            (pause * 2).min(Duration::from_millis(250))
        };
        std::thread::sleep(pause);
    }
}

/// Formatting stays clear of `core::fmt`: this runs once per request.
pub(crate) fn format_entry(line: &mut Vec<u8>, e: &Entry) {
    line.extend_from_slice(b"{\"time\":\"");
    rfc3339(line, e.time);
    line.extend_from_slice(b"\",\"request_id\":");
    json_str(line, e.request_id.as_bytes());
    line.extend_from_slice(b",\"client\":");
    json_str(line, e.client);
    line.extend_from_slice(b",\"host\":");
    match e.host {
        Some(h) => json_str(line, h.as_bytes()),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"method\":");
    json_str(line, e.method.as_str().as_bytes());
    // The query string is left out: it often carries tokens.
    line.extend_from_slice(b",\"path\":");
    json_str(line, e.uri.path().as_bytes());
    let micros = u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX);
    line.extend_from_slice(b",\"status\":");
    decimal(line, u64::from(e.status), 1);
    line.extend_from_slice(b",\"bytes\":");
    decimal(line, e.bytes, 1);
    line.extend_from_slice(b",\"duration_ms\":");
    decimal(line, micros / 1000, 1);
    line.push(b'.');
    decimal(line, micros % 1000, 3);
    for (key, v) in [
        (&b",\"route\":"[..], e.route),
        (&b",\"upstream\":"[..], e.upstream),
    ] {
        line.extend_from_slice(key);
        match v {
            Some(v) => json_str(line, v.as_bytes()),
            None => line.extend_from_slice(b"null"),
        }
    }
    if let Some(err) = e.error {
        line.extend_from_slice(b",\"error\":");
        json_str(line, err.as_bytes());
    }
    line.extend_from_slice(b"}\n");
}

/// A JSON string of `s`, escaped by serde_json (so `café` stays `café`). A header value may
/// hold bytes that are not UTF-8: those are read as Latin-1 (HTTP's obs-text), and everything
/// outside printable ASCII is written `\u00XX`, so the line is valid JSON whatever a client
/// sent.
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    let Ok(text) = std::str::from_utf8(s) else {
        return latin1_str(out, s);
    };
    // Serializing a `str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn latin1_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
    }
    out.push(b'"');
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn decimal(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n > 0 || digits.len() - i < width {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&digits[i..]);
}

/// `2026-11-03T12:34:56.789Z`: RFC 3339 in UTC, always with milliseconds.
const TIME_FORMAT: EncodedConfig = Config::DEFAULT
    .set_time_precision(TimePrecision::Second {
        decimal_digits: NonZeroU8::new(3),
    })
    .encode();

fn rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    // Formatting a time of the years 0 to 9999 into a `Vec` cannot fail.
    let _ = OffsetDateTime::from(t).format_into(out, &Iso8601::<TIME_FORMAT>);
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn line_format() {
        let host = HeaderValue::from_bytes(b"shop.\xe9xample.com").unwrap();
        let uri: Uri = "/a%22b?token=secret".parse().unwrap();
        let e = Entry {
            time: UNIX_EPOCH + Duration::from_millis(1_793_000_000_123),
            request_id: &HeaderValue::from_static("abc"),
            client: b"127.0.0.1",
            host: Some(&host),
            method: &Method::GET,
            uri: &uri,
            status: 200,
            bytes: 12,
            duration: Duration::from_micros(1500),
            route: Some("shop:/"),
            upstream: None,
            error: None,
        };
        let mut line = Vec::new();
        format_entry(&mut line, &e);
        let line = String::from_utf8(line).unwrap();
        assert!(
            line.contains("\"host\":\"shop.\\u00e9xample.com\""),
            "{line}"
        );
        assert!(line.starts_with("{\"time\":\"2026-10-26T"), "{line}");
        assert!(line.contains("\"duration_ms\":1.500"), "{line}");
        assert!(!line.contains("secret"), "{line}");
        assert!(line.ends_with("\"upstream\":null}\n"), "{line}");
        assert!(
            line.starts_with("{\"time\":\"2026-10-26T07:33:20.123Z\","),
            "{line}"
        );
    }

    #[test]
    fn text_is_escaped_as_json() {
        // (raw bytes, JSON written, the text a JSON reader gets back)
        let check = |raw: &[u8], json: &str, text: &str| {
            let mut out = Vec::new();
            json_str(&mut out, raw);
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out, json);
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text);
        };
        check("café".as_bytes(), "\"café\"", "café");
        check(b"a\x01b\n\"\\", "\"a\\u0001b\\n\\\"\\\\\"", "a\u{1}b\n\"\\");
        // not UTF-8: read as Latin-1
        check(b"caf\xe9", "\"caf\\u00e9\"", "café");
    }
}
