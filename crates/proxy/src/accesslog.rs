//! The access log: one JSON line per request, written by its own thread.
//!
//! The hot path formats the line into a per-thread buffer; a writer thread writes the buffers
//! out. When the writer falls behind, lines are dropped and counted rather than slowing requests.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Uri};

use crate::config::AccessLog;
use std::sync::Arc;

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

/// A JSON string; bytes outside printable ASCII are escaped (`\u00XX`), so the line is valid
/// JSON whatever a client sent.
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
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

thread_local! {
    /// The last second formatted on this thread and its text up to the seconds digits.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// `2026-11-03T12:34:56.789Z`; the date and time of day are formatted once per second.
fn rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (cached, text) = SECOND.get();
    let text = if cached == secs {
        text
    } else {
        let mut text = Vec::with_capacity(19);
        civil(&mut text, secs);
        let text: [u8; 19] = text.try_into().unwrap_or([b'0'; 19]);
        SECOND.set((secs, text));
        text
    };
    out.extend_from_slice(&text);
    out.push(b'.');
    decimal(out, u64::from(d.subsec_millis()), 3);
    out.push(b'Z');
}

/// `2026-11-03T12:34:56`
fn civil(out: &mut Vec<u8>, secs: u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    );
}

#[cfg(test)]
mod tests {
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
    }
}
