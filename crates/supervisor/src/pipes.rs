//! An instance's stdout and stderr are named pipes (FIFOs) under the supervisor's
//! `pipe_root`, not anonymous pipes, so that they outlive the daemon that reads them.
//!
//! With an anonymous pipe the read end lives only in the daemon: when the daemon goes away
//! (a restart, `kill -9`, an upgrade) the app's next log line gets `SIGPIPE`/`EPIPE`, which
//! kills most apps. Here the instance's fd 1 and 2 are the FIFOs opened read-write, so the
//! pipe always has a reader (the instance itself, which never reads it) and a write never
//! fails; while no daemon reads, lines wait in the pipe buffer (raised to
//! [`PIPE_BYTES`] where the kernel allows), and only a full buffer makes the app wait. The
//! next daemon opens the same paths for reading and carries on: the log continues where the
//! old daemon stopped. No process is added per instance (a log shim would cost one per
//! instance, a few MB each) and no descriptor has to be handed over on an upgrade.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tokio::net::unix::pipe;

use crate::types::InstanceKey;

/// The pipe buffer asked for (`F_SETPIPE_SZ`); 1 MiB is the unprivileged maximum by default.
pub(crate) const PIPE_BYTES: libc::c_int = 1 << 20;

/// The two FIFOs of one instance: `ROOT/APP/SERVICE.INDEX@RELEASE.{out,err}`.
#[derive(Debug, Clone)]
pub(crate) struct LogPipes {
    pub out: PathBuf,
    pub err: PathBuf,
}

/// The write ends an instance is started with (its stdout and stderr).
pub(crate) struct WriteEnds {
    pub out: File,
    pub err: File,
}

/// The read ends the daemon's log readers use.
pub(crate) struct ReadEnds {
    pub out: pipe::Receiver,
    pub err: pipe::Receiver,
}

impl LogPipes {
    pub(crate) fn new(root: &Path, key: &InstanceKey) -> LogPipes {
        let dir = root.join(&key.app);
        let name = format!("{}.{}@{}", key.service, key.instance, key.release);
        LogPipes {
            out: dir.join(format!("{name}.out")),
            err: dir.join(format!("{name}.err")),
        }
    }

    /// Make fresh FIFOs (replacing those of an earlier attempt) and open them read-write for
    /// the child. Open the read ends after this and before the spawn: a FIFO read with no
    /// writer is at its end.
    pub(crate) fn create(&self) -> io::Result<WriteEnds> {
        if let Some(dir) = self.out.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        Ok(WriteEnds {
            out: fifo(&self.out)?,
            err: fifo(&self.err)?,
        })
    }

    /// Open both read ends (non-blocking). Must run inside a tokio runtime.
    pub(crate) fn open(&self) -> io::Result<ReadEnds> {
        let open = |p: &Path| pipe::OpenOptions::new().open_receiver(p);
        Ok(ReadEnds {
            out: open(&self.out)?,
            err: open(&self.err)?,
        })
    }

    /// Remove both FIFOs (the instance stopped for good).
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.err);
    }
}

/// A new FIFO at `path` (0600), opened read-write (never blocks, never at its end while the
/// child holds it), with a large buffer where the kernel gives one.
fn fifo(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    // Best effort: the default 64 KiB still works, it only fills sooner.
    let _ = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instance_has_pipes_of_its_own() {
        let key = |instance| InstanceKey {
            app: "shop".into(),
            service: "web".into(),
            release: "r1".into(),
            instance,
        };
        let (a, b) = (
            LogPipes::new(Path::new("/s"), &key(0)),
            LogPipes::new(Path::new("/s"), &key(1)),
        );
        assert_eq!(a.out, Path::new("/s/shop/web.0@r1.out"));
        assert_eq!(a.err, Path::new("/s/shop/web.0@r1.err"));
        assert_eq!(b.out, Path::new("/s/shop/web.1@r1.out"));
    }
}
