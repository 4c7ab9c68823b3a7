//! Reading logs back: all at once ([`read`]) or following new lines ([`follow`]).

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::files::{CURRENT, parse_all, rotated_files, services};
use super::line::LogLine;

const FOLLOW_POLL: Duration = Duration::from_millis(200);

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
