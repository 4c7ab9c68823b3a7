//! Directories: a tar of the tree (owners, modes and times kept), unpacked next to the
//! directory and swapped in with two renames.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Writes a tar of `dir` to `out`; returns the number of files in it.
pub(crate) fn pack(dir: &Path, out: &mut dyn Write) -> io::Result<u64> {
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    tar.append_dir_all(".", dir)?;
    tar.finish()?;
    Ok(count_files(dir))
}

/// Unpacks a tar into `into` (created); returns the number of files.
pub(crate) fn unpack(tar: impl Read, into: &Path) -> io::Result<u64> {
    fs::create_dir_all(into)?;
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.unpack(into)?;
    Ok(count_files(into))
}

pub(crate) fn count_files(dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

/// Where a restore unpacks, next to `target`.
pub(crate) fn staging(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    target.with_file_name(format!(".{name}.berth-restore"))
}

/// Swaps the unpacked `staged` tree in for `target`: the old tree is renamed aside, the new
/// one renamed in, then the old one removed.
pub(crate) fn swap_in(staged: &Path, target: &Path) -> Result<(), String> {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let old = target.with_file_name(format!(".{name}.berth-old"));
    let _ = fs::remove_dir_all(&old);
    let had = target.exists();
    if had {
        fs::rename(target, &old).map_err(|e| format!("move {} aside: {e}", target.display()))?;
    }
    if let Err(e) = fs::rename(staged, target) {
        if had {
            let _ = fs::rename(&old, target);
        }
        return Err(format!("rename into {}: {e}", target.display()));
    }
    if had {
        fs::remove_dir_all(&old).map_err(|e| format!("remove {}: {e}", old.display()))?;
    }
    Ok(())
}
