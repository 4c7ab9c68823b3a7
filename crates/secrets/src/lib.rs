//! Secret values: the key that encrypts them at rest, generating them, and keeping them out of
//! everything berth prints.
//!
//! - [`Key`]: an age x25519 identity kept in a file of the state directory (mode 0600, created
//!   on first use); [`Key::encrypt`] / [`Key::decrypt`] turn values into the bytes the store
//!   keeps, so `state.db` alone reveals nothing.
//! - [`generate`]: a new value of a `[secrets]` kind from the OS CSPRNG.
//! - [`Redactor`]: replaces known values with `[redacted NAME]` in any text berth shows.
//! - [`Secret`]: a value whose `Debug` and `Display` never show it.
//!
//! Invariant: no error, `Debug` or `Display` of this crate contains a secret value.

mod generate;
mod key;
mod redact;

use std::fmt;

pub use generate::generate;
pub use key::{Error, KEY_FILE, Key};
pub use redact::Redactor;
pub use spec::SecretKind;

/// A secret value. `Debug` and `Display` print `[redacted]`; read it with [`Secret::expose`]
/// only where it is handed to a process or encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret([redacted]))");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }
}
