//! The key that encrypts secret values at rest: an age x25519 identity in a file of the state
//! directory, readable by its owner only.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age::x25519::{Identity, Recipient};

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "secrets.key";

const HEADER: &str = "# berth secrets key: back it up (berth secrets export-key); without it the\n\
                      # secrets in state.db cannot be read. Keep this file mode 0600.\n";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Text given to [`Key::import`] is not a key. The message never quotes the text.
    #[error("not a berth secrets key: expected a line starting with AGE-SECRET-KEY-1")]
    InvalidKey,
    /// Ciphertext that this key cannot open: another key, or damaged data.
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
}

/// An age x25519 identity. `Debug` never shows it; [`Key::export`] is the only way out.
#[derive(Clone)]
pub struct Key {
    identity: Identity,
    recipient: Recipient,
    /// The comment written above the key in its file and in [`Key::export`].
    header: &'static str,
}

impl Key {
    /// A new key from the OS CSPRNG.
    pub fn generate() -> Key {
        Key::from_identity(Identity::generate())
    }

    fn from_identity(identity: Identity) -> Key {
        let recipient = identity.to_public();
        Key {
            identity,
            recipient,
            header: HEADER,
        }
    }

    /// The same key, exported and written with another comment (the backup key's says how to
    /// keep it).
    pub fn with_header(self, header: &'static str) -> Key {
        Key { header, ..self }
    }

    /// Reads the key at `path`, or creates it there on first use: the file with mode 0600 (written
    /// whole to a temporary file, then renamed into place), a missing parent directory with mode
    /// 0700. A key file that group or others may read is refused, as ssh refuses such keys.
    pub fn load_or_create(path: &Path) -> io::Result<Key> {
        Key::load_or_create_as(path, HEADER)
    }

    /// [`Key::load_or_create`], with `header` as the key's comment.
    pub fn load_or_create_as(path: &Path, header: &'static str) -> io::Result<Key> {
        match fs::read_to_string(path) {
            Ok(text) => {
                let mode = fs::metadata(path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is readable by other users (mode {mode:04o}); run chmod 600 {}",
                            path.display(),
                            path.display()
                        ),
                    ));
                }
                Key::import(&text)
                    .map(|k| k.with_header(header))
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}: {e}", path.display()),
                        )
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = Key::generate().with_header(header);
                key.write(path)?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the key to `path` (mode 0600, replacing any file there atomically), creating a
    /// missing parent directory with mode 0700. Used by `load_or_create` and `import-key`.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let file_name = path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(self.export().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The key as text an operator can back up and give to [`Key::import`]: a comment and one
    /// `AGE-SECRET-KEY-1…` line (the age identity format, so `age -d -i` can read it too).
    pub fn export(&self) -> String {
        format!(
            "{}{}\n",
            self.header,
            self.identity.to_string().expose_secret()
        )
    }

    /// A key from text made by [`Key::export`] (comment and blank lines are skipped) or a bare
    /// `AGE-SECRET-KEY-1…` line.
    pub fn import(text: &str) -> Result<Key, Error> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return Err(Error::InvalidKey);
        };
        Identity::from_str(line)
            .map(Key::from_identity)
            .map_err(|_| Error::InvalidKey)
    }

    /// A short public fingerprint (the age recipient), to tell keys apart without showing them.
    pub fn public(&self) -> String {
        self.recipient.to_string()
    }

    /// The age identity, to decrypt streams (backups) with.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The age recipient, to encrypt streams (backups) to.
    pub fn recipient(&self) -> &Recipient {
        &self.recipient
    }

    /// `plaintext` encrypted to this key, in the age binary format.
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        age::encrypt(&self.recipient, plaintext)
            .expect("encrypting to an x25519 recipient into memory cannot fail")
    }

    /// The plaintext of [`Key::encrypt`]'s output; an error for another key or damaged data.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, Error> {
        age::decrypt(&self.identity, ciphertext).map_err(|e| Error::Decrypt(e.to_string()))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_with_owner_only_modes_then_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state/deeper/secrets.key");
        let key = Key::load_or_create(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&tmp.path().join("state")), 0o700);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secrets.key"]);

        let again = Key::load_or_create(&path).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(again.decrypt(&key.encrypt(b"v")).unwrap(), b"v");
    }

    #[test]
    fn refuses_a_key_file_others_can_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(KEY_FILE);
        Key::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Key::load_or_create(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn roundtrip_and_wrong_key() {
        let key = Key::generate();
        let secret = b"postgres://u:hunter2@db/shop";
        let sealed = key.encrypt(secret);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_eq!(key.decrypt(&sealed).unwrap(), secret);
        // Encryption is randomized: the same value twice gives different ciphertexts.
        assert_ne!(key.encrypt(secret), sealed);

        let other = Key::generate();
        assert!(matches!(other.decrypt(&sealed), Err(Error::Decrypt(_))));
        let mut damaged = sealed.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(key.decrypt(&damaged).is_err());
    }

    #[test]
    fn export_import() {
        let key = Key::generate();
        let text = key.export();
        assert!(text.starts_with("# berth secrets key"));
        let line = text.lines().last().unwrap();
        assert!(line.starts_with("AGE-SECRET-KEY-1"));
        let back = Key::import(&text).unwrap();
        assert_eq!(back.decrypt(&key.encrypt(b"x")).unwrap(), b"x");
        assert_eq!(Key::import(line).unwrap().public(), key.public());

        assert!(matches!(Key::import("nope"), Err(Error::InvalidKey)));
        assert!(matches!(Key::import(""), Err(Error::InvalidKey)));
        let two = format!("{line}\n{line}\n");
        assert!(matches!(Key::import(&two), Err(Error::InvalidKey)));
        // Debug shows the public half only.
        assert!(!format!("{key:?}").contains("AGE-SECRET-KEY"));
        // Writing an imported key replaces the file, still 0600.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(KEY_FILE);
        Key::generate().write(&path).unwrap();
        back.write(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(Key::load_or_create(&path).unwrap().public(), key.public());
    }
}
