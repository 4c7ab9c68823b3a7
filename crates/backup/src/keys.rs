//! The backup key: an age x25519 identity. Backups are encrypted to its public half
//! (`backup.pub`), which is all a backup needs; the identity (`backup.key`, mode 0600) is needed
//! only to verify or restore, and may be exported (`berth backup export-key`) and removed from
//! the server to be kept offline.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::x25519::{Identity, Recipient};
use secrets::Key;

pub const KEY_FILE: &str = "backup.key";
pub const RECIPIENT_FILE: &str = "backup.pub";

const HEADER: &str = "# berth backup key: keep a copy offline (berth backup export-key); without it\n\
                      # no backup can be verified or restored. Keep this file mode 0600.\n";

/// The recipient backups are encrypted to, and the identity when it is on this server.
#[derive(Debug, Clone)]
pub struct Keys {
    recipient: Recipient,
    identity: Option<Key>,
    key_path: PathBuf,
}

impl Keys {
    /// Reads the keys in `dir`, creating them on first use.
    pub fn load_or_create(dir: &Path) -> io::Result<Keys> {
        let key_path = dir.join(KEY_FILE);
        let pub_path = dir.join(RECIPIENT_FILE);
        let recipient = match fs::read_to_string(&pub_path) {
            Ok(text) => Some(Recipient::from_str(text.trim()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not an age recipient: {e}", pub_path.display()),
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let identity = match recipient {
            // The recipient alone is enough to back up; the identity may have been taken away.
            Some(_) if !key_path.exists() => None,
            _ => Some(Key::load_or_create_as(&key_path, HEADER)?),
        };
        let recipient = match (recipient, &identity) {
            (Some(r), Some(key)) if r.to_string() != key.public() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} does not belong to {}: put back the matching pair, or remove {} to \
                         derive it from the key",
                        pub_path.display(),
                        key_path.display(),
                        pub_path.display()
                    ),
                ));
            }
            (Some(r), _) => r,
            (None, Some(key)) => {
                let r = key.recipient().clone();
                fs::write(&pub_path, format!("{r}\n"))?;
                r
            }
            (None, None) => unreachable!("the key is created when the recipient is missing"),
        };
        Ok(Keys {
            recipient,
            identity,
            key_path,
        })
    }

    pub fn recipient(&self) -> &Recipient {
        &self.recipient
    }

    /// The identity on this server, or why there is none.
    pub fn identity(&self) -> Result<&Identity, String> {
        match &self.identity {
            Some(key) => Ok(key.identity()),
            None => Err(format!(
                "the backup key is not on this server ({} is missing): pass the key kept \
                 offline with --identity FILE",
                self.key_path.display()
            )),
        }
    }

    /// The identity as text for offline keeping.
    pub fn export(&self) -> Result<String, String> {
        self.identity()?;
        Ok(self.identity.as_ref().map(Key::export).unwrap_or_default())
    }
}

/// An identity given by the operator (the text of `berth backup export-key`).
pub fn import(text: &str) -> Result<Identity, String> {
    Key::import(text)
        .map(|k| k.identity().clone())
        .map_err(|e| e.to_string().replace("secrets", "backup"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipient_alone_is_enough_to_back_up() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        let exported = keys.export().unwrap();
        assert!(exported.contains("AGE-SECRET-KEY-1"));
        assert!(exported.starts_with("# berth backup key"));

        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let without = Keys::load_or_create(dir.path()).unwrap();
        assert_eq!(
            without.recipient().to_string(),
            keys.recipient().to_string()
        );
        let Err(err) = without.identity() else {
            panic!("no identity without the key file")
        };
        assert!(err.contains("--identity"), "{err}");
        assert!(
            !dir.path().join(KEY_FILE).exists(),
            "no new key replaces the one taken away"
        );

        let back = import(&exported).unwrap();
        assert_eq!(back.to_public().to_string(), keys.recipient().to_string());
        assert!(import("nonsense").is_err());
    }
}
