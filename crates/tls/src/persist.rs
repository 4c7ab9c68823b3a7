//! Files under `STATE/certs/`: the directory is 0700, every file 0600, written atomically
//! (temp file, fsync, rename) so a crash never leaves half a key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::Error;

pub(crate) fn ensure_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("set permissions of", dir, e))
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // mode() only applies on creation; a leftover temp file may have other bits.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("write", path, e)
    })
}

/// `Ok(None)` when the file does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Certificate ids become file names: keep them plain.
pub(crate) fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::BadId(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dir_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        ensure_dir(&dir).unwrap();
        let file = dir.join("a.key");
        write_private(&file, b"secret").unwrap();
        write_private(&file, b"secret2").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(fs::read(&file).unwrap(), b"secret2");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
        assert_eq!(read_optional(&dir.join("none")).unwrap(), None);
    }

    #[test]
    fn ids() {
        for ok in ["shop", "shop-2", "a.b_c"] {
            check_id(ok).unwrap();
        }
        for bad in ["", "../x", "a/b", ".hidden", "Shop", "*.x"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }
}
