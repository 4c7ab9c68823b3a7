//! The writer task of one service: appends lines to `current.log`, rotates by size.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::files::{CURRENT, rotated};
use super::line::{Record, format_time};

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

fn remove_if_exists(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
