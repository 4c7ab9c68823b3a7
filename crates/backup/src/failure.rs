//! Why a backup, drill or restore failed: the stage and what went wrong there.

use std::fmt;

/// The stages of a backup, drill or restore, named in every failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Opening the storage target, the key.
    Prepare,
    /// Connecting to the database, exporting its snapshot, counting rows.
    Snapshot,
    /// `pg_dump`, the SQLite copy, the tar of a directory.
    Dump,
    /// Compression and encryption.
    Seal,
    Upload,
    /// Reading the object back and checking its sha256.
    ReadBack,
    Manifest,
    /// Fetching the object and checking its sha256 before a restore or drill.
    Check,
    /// `pg_restore`, the SQLite or directory swap.
    Restore,
    /// Comparing the restored data with the manifest (row counts, integrity).
    Compare,
    /// Removing what a failed step left (a partial object, a scratch database).
    Cleanup,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::Snapshot => "snapshot",
            Stage::Dump => "dump",
            Stage::Seal => "compress+encrypt",
            Stage::Upload => "upload",
            Stage::ReadBack => "read-back",
            Stage::Manifest => "manifest",
            Stage::Check => "check",
            Stage::Restore => "restore",
            Stage::Compare => "compare",
            Stage::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed stage and why. Messages name hosts, databases and paths, never passwords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage} failed: {message}")]
pub struct Failure {
    pub stage: Stage,
    pub message: String,
}

impl Failure {
    pub fn new(stage: Stage, message: impl Into<String>) -> Failure {
        Failure {
            stage,
            message: message.into(),
        }
    }
}

/// `err.at(Stage::Upload)`: a failure of that stage from any displayable error.
pub(crate) trait At<T> {
    fn at(self, stage: Stage) -> Result<T, Failure>;
}

impl<T, E: fmt::Display> At<T> for Result<T, E> {
    fn at(self, stage: Stage) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(stage, e.to_string()))
    }
}

/// `err` and its causes, `: `-separated; a cause whose text is already there is left out. An
/// HTTP client's "error sending request" says little without its "Connection refused".
pub(crate) fn causes(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// The last lines of a tool's stderr (at most 2 KiB), for a failure message.
pub(crate) fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(8);
    let mut out = lines[start..].join("\n");
    if out.len() > 2048 {
        let cut = out.len() - 2048;
        let cut = (cut..out.len())
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out = format!("…{}", &out[cut..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and a cause.
    #[derive(Debug)]
    struct Wrapped(&'static str, std::io::Error);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn causes_are_named_once_each() {
        let refused = || std::io::Error::other("Connection refused");
        let e = Wrapped("error sending request", refused());
        assert_eq!(causes(&e), "error sending request: Connection refused");
        let e = Wrapped("HTTP error: Connection refused", refused());
        assert_eq!(causes(&e), "HTTP error: Connection refused");
    }
}
