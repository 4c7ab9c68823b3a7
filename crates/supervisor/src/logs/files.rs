//! Where an app's logs are on disk: `LOG_ROOT/APP/SERVICE/current.log`, rotated to
//! `current.log.1` (newest) .. `current.log.N` (oldest).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::line::{LogLine, parse_line};

pub(super) const CURRENT: &str = "current.log";

/// `current.log.I` in `dir`.
pub(super) fn rotated(dir: &Path, i: u32) -> PathBuf {
    dir.join(format!("{CURRENT}.{i}"))
}

/// The service directories under an app's `dir` (only `only`, when given), sorted.
pub(super) fn services(dir: &Path, only: Option<&str>) -> io::Result<Vec<String>> {
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
pub(super) fn rotated_files(svc_dir: &Path) -> io::Result<Vec<PathBuf>> {
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

/// Every well-formed line of a file's `text`; others are skipped.
pub(super) fn parse_all(text: &[u8], out: &mut Vec<LogLine>) {
    for raw in text.split(|&b| b == b'\n') {
        if let Some(line) = parse_line(&String::from_utf8_lossy(raw)) {
            out.push(line);
        }
    }
}
