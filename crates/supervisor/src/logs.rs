//! Captured logs: the on-disk format, the writer with size rotation, and reading back.
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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

/// Longest line kept, in bytes; the rest is cut.
pub const MAX_LINE: usize = 16 * 1024;
const CURRENT: &str = "current.log";
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

impl Stream {
    fn as_str(self) -> &'static str {
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
    pub label: std::sync::Arc<str>,
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

/// Start the writer task for one `LOG_ROOT/APP/SERVICE` directory.
pub(crate) fn spawn_writer(dir: PathBuf, max_bytes: u64, keep: u32) -> mpsc::Sender<Record> {
    let (tx, mut rx) = mpsc::channel::<Record>(1024);
    tokio::spawn(async move {
        let mut w = Writer {
            dir,
            max_bytes,
            keep,
            file: None,
            size: 0,
            failing: false,
        };
        // Small appends to a local file: done inline rather than through spawn_blocking.
        while let Some(rec) = rx.recv().await {
            w.write(&rec);
            while let Ok(rec) = rx.try_recv() {
                w.write(&rec);
            }
            w.flush();
        }
    });
    tx
}

struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<BufWriter<File>>,
    size: u64,
    failing: bool,
}

impl Writer {
    fn write(&mut self, rec: &Record) {
        let line = format!(
            "{} {} {} | {}\n",
            format_time(rec.time),
            rec.label,
            rec.stream.as_str(),
            rec.text
        );
        let len = line.len() as u64;
        let result = (|| -> io::Result<()> {
            if self.file.is_none() {
                self.open()?;
            }
            if self.size > 0 && self.size + len > self.max_bytes {
                self.rotate()?;
            }
            let file = self
                .file
                .as_mut()
                .ok_or_else(|| io::Error::other("no file"))?;
            file.write_all(line.as_bytes())?;
            self.size += len;
            Ok(())
        })();
        self.note(result);
    }

    fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let r = f.flush();
            self.note(r);
        }
    }

    /// Log a failure once (not per line), and retry opening on the next line.
    fn note(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(e) => {
                if !self.failing {
                    tracing::error!(dir = %self.dir.display(), error = %e, "cannot write app log; lines are dropped until it works again");
                }
                self.failing = true;
                self.file = None;
            }
        }
    }

    fn open(&mut self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(CURRENT))?;
        self.size = file.metadata()?.len();
        self.file = Some(BufWriter::with_capacity(64 * 1024, file));
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        let current = self.dir.join(CURRENT);
        if self.keep == 0 {
            remove_if_exists(&current)?;
        } else {
            remove_if_exists(&rotated(&self.dir, self.keep))?;
            for i in (1..self.keep).rev() {
                match fs::rename(rotated(&self.dir, i), rotated(&self.dir, i + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            fs::rename(&current, rotated(&self.dir, 1))?;
        }
        self.open()
    }
}

fn rotated(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("{CURRENT}.{i}"))
}

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Lines of one app (`dir` = `LOG_ROOT/APP`), optionally of one service, oldest first across
/// rotated files, only those at or after `since`. A missing directory reads as no lines.
pub fn read(
    dir: &Path,
    service: Option<&str>,
    since: Option<SystemTime>,
) -> io::Result<Vec<LogLine>> {
    let mut lines = Vec::new();
    for svc in services(dir, service)? {
        let svc_dir = dir.join(&svc);
        for path in rotated_files(&svc_dir)? {
            let mut text = Vec::new();
            match File::open(&path) {
                Ok(mut f) => f.read_to_end(&mut text)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            parse_all(&text, &mut lines);
        }
        let mut current = Vec::new();
        match File::open(svc_dir.join(CURRENT)) {
            Ok(mut f) => {
                f.read_to_end(&mut current)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        parse_all(&current, &mut lines);
    }
    Ok(finish(lines, since))
}

/// Filter by `since` and merge services by time (stable: order within a file is kept).
fn finish(mut lines: Vec<LogLine>, since: Option<SystemTime>) -> Vec<LogLine> {
    if let Some(since) = since {
        lines.retain(|l| l.time >= since);
    }
    lines.sort_by_key(|l| l.time);
    lines
}

fn services(dir: &Path, only: Option<&str>) -> io::Result<Vec<String>> {
    if let Some(s) = only {
        return Ok(vec![s.to_owned()]);
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// `current.log.N` files, oldest (highest N) first.
fn rotated_files(svc_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(svc_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut numbered = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("current.log.")
            .and_then(|n| n.parse::<u32>().ok())
        {
            numbered.push(n);
        }
    }
    numbered.sort_unstable_by(|a, b| b.cmp(a));
    Ok(numbered.into_iter().map(|n| rotated(svc_dir, n)).collect())
}

fn parse_all(text: &[u8], out: &mut Vec<LogLine>) {
    for raw in text.split(|&b| b == b'\n') {
        if let Some(line) = parse_line(&String::from_utf8_lossy(raw)) {
            out.push(line);
        }
    }
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

/// Follow an app's logs: first the lines at or after `since` (all when `None`), then new lines
/// as they are written, until the receiver is dropped. Runs on its own thread, polling every
/// 200 ms; services that appear later are picked up when `service` is `None`.
pub fn follow(
    dir: PathBuf,
    service: Option<String>,
    since: Option<SystemTime>,
) -> mpsc::Receiver<LogLine> {
    let (tx, rx) = mpsc::channel(4096);
    let spawned = std::thread::Builder::new()
        .name("berth-log-follow".into())
        .spawn(move || {
            if let Err(e) = follow_loop(&dir, service.as_deref(), since, &tx) {
                tracing::warn!(dir = %dir.display(), error = %e, "log follow ended");
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a log follower thread");
    }
    rx
}

struct Tail {
    service_dir: PathBuf,
    file: Option<File>,
    ino: u64,
    partial: Vec<u8>,
}

impl Tail {
    /// Read what was appended since last time (switching to a new `current.log` after
    /// rotation, reading any files rotated in between) and parse the complete lines.
    fn poll(&mut self, out: &mut Vec<LogLine>) -> io::Result<()> {
        let path = self.service_dir.join(CURRENT);
        let on_disk = fs::metadata(&path).ok().map(|m| m.ino());
        self.drain(out)?;
        if on_disk.is_none() || on_disk == Some(self.ino) {
            return Ok(());
        }
        // Rotated (or first seen). Once renamed the old file is final, and it is drained.
        let new = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let new_ino = new.metadata()?.ino();
        if self.file.is_some() {
            // Files rotated after the old one and before the new one (several rotations
            // within one poll): complete, so read them whole.
            let mut between: Vec<(u64, File)> = Vec::new();
            for p in rotated_files(&self.service_dir)? {
                if let Ok(f) = File::open(&p) {
                    let ino = f.metadata()?.ino();
                    if !between.iter().any(|(i, _)| *i == ino) {
                        between.push((ino, f));
                    }
                }
            }
            // Oldest first; keep what is after the old file (all, if it was dropped) and
            // before the new current one.
            if let Some(i) = between.iter().position(|(ino, _)| *ino == self.ino) {
                between.drain(..=i);
            }
            if let Some(i) = between.iter().position(|(ino, _)| *ino == new_ino) {
                between.truncate(i);
            }
            for (_, mut f) in between {
                let mut text = Vec::new();
                f.read_to_end(&mut text)?;
                parse_all(&text, out);
            }
        }
        self.ino = new_ino;
        self.file = Some(new);
        self.partial.clear();
        self.drain(out)
    }

    fn drain(&mut self, out: &mut Vec<LogLine>) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        self.partial.extend_from_slice(&buf);
        if let Some(last_nl) = self.partial.iter().rposition(|&b| b == b'\n') {
            let rest = self.partial.split_off(last_nl + 1);
            parse_all(&self.partial, out);
            self.partial = rest;
        }
        Ok(())
    }
}

fn follow_loop(
    dir: &Path,
    service: Option<&str>,
    since: Option<SystemTime>,
    tx: &mpsc::Sender<LogLine>,
) -> io::Result<()> {
    let mut tails: Vec<(String, Tail)> = Vec::new();
    let mut first = true;
    loop {
        let mut batch = Vec::new();
        for svc in services(dir, service)? {
            if tails.iter().any(|(s, _)| *s == svc) {
                continue;
            }
            let service_dir = dir.join(&svc);
            if first {
                // Backlog from rotated files; current.log is read through the Tail below.
                for path in rotated_files(&service_dir)? {
                    if let Ok(mut f) = File::open(&path) {
                        let mut text = Vec::new();
                        f.read_to_end(&mut text)?;
                        parse_all(&text, &mut batch);
                    }
                }
            }
            tails.push((
                svc,
                Tail {
                    service_dir,
                    file: None,
                    ino: 0,
                    partial: Vec::new(),
                },
            ));
        }
        for (_, tail) in &mut tails {
            tail.poll(&mut batch)?;
        }
        first = false;
        for line in finish(batch, since) {
            if tx.blocking_send(line).is_err() {
                return Ok(());
            }
        }
        if tx.is_closed() {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// `2026-11-22T05:01:18.123Z`
pub fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Inverse of [`format_time`].
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[19] != b'.'
        || b[23] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + sec;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
}

// Howard Hinnant's civil calendar algorithms (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
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
        assert_eq!(parse_time("2026-13-22T05:01:18.123Z"), None);
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
