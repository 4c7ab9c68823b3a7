//! Secret values per app instance (`shop`, `shop.staging`). The store keeps the bytes it is
//! given: callers encrypt with `secrets::Key` first, so `state.db` never holds a plaintext.

use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use crate::{Result, SecretOrigin, Store, from_millis, to_millis};

/// What `berth secrets list` shows: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub name: String,
    pub origin: SecretOrigin,
    pub created_at: SystemTime,
    /// When the value was last replaced (`rotate`, or `set` over an existing value).
    pub rotated_at: Option<SystemTime>,
}

impl Store {
    /// Stores `ciphertext` as the value of `name`. A first value sets `created_at`; replacing
    /// one keeps `created_at` and sets `rotated_at`. Returns whether a value was replaced.
    pub fn put_secret(
        &mut self,
        app: &str,
        name: &str,
        ciphertext: &[u8],
        origin: SecretOrigin,
    ) -> Result<bool> {
        let now = to_millis(SystemTime::now());
        let tx = self.conn.transaction()?;
        let replaced = tx.execute(
            "UPDATE secrets SET ciphertext = ?3, origin = ?4, rotated_at = ?5
             WHERE app = ?1 AND name = ?2",
            params![app, name, ciphertext, origin, now],
        )? > 0;
        if !replaced {
            tx.execute(
                "INSERT INTO secrets (app, name, ciphertext, origin, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![app, name, ciphertext, origin, now],
            )?;
        }
        tx.commit()?;
        Ok(replaced)
    }

    /// The stored (encrypted) value of one secret.
    pub fn secret(&self, app: &str, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT ciphertext FROM secrets WHERE app = ?1 AND name = ?2",
                params![app, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every stored (encrypted) value of an app, by name: to build a process environment or a
    /// redactor.
    pub fn secret_values(&self, app: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, ciphertext FROM secrets WHERE app = ?1 ORDER BY name")?;
        let rows = stmt.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every stored (encrypted) value of every app: (app, name, ciphertext). For the redactor.
    pub fn all_secret_values(&self) -> Result<Vec<(String, String, Vec<u8>)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT app, name, ciphertext FROM secrets ORDER BY app, name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The secrets of an app without their values, by name.
    pub fn secrets(&self, app: &str) -> Result<Vec<SecretMeta>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, origin, created_at, rotated_at FROM secrets WHERE app = ?1 ORDER BY name",
        )?;
        let rows = stmt.query_map([app], |r| {
            Ok(SecretMeta {
                name: r.get(0)?,
                origin: r.get(1)?,
                created_at: from_millis(r.get(2)?),
                rotated_at: r.get::<_, Option<i64>>(3)?.map(from_millis),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a secret; returns whether it existed.
    pub fn delete_secret(&self, app: &str, name: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM secrets WHERE app = ?1 AND name = ?2",
            params![app, name],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crud_per_app_instance() {
        let mut s = Store::open_in_memory().unwrap();
        assert_eq!(s.secret("shop", "KEY").unwrap(), None);
        assert!(
            !s.put_secret("shop", "KEY", b"c1", SecretOrigin::Generated)
                .unwrap()
        );
        s.put_secret("shop", "DB", b"c2", SecretOrigin::Set)
            .unwrap();
        s.put_secret("shop.staging", "KEY", b"c3", SecretOrigin::Generated)
            .unwrap();

        assert_eq!(
            s.secret("shop", "KEY").unwrap().as_deref(),
            Some(&b"c1"[..])
        );
        assert_eq!(
            s.secret("shop.staging", "KEY").unwrap().as_deref(),
            Some(&b"c3"[..])
        );
        let list = s.secrets("shop").unwrap();
        let names: Vec<_> = list.iter().map(|m| (m.name.as_str(), m.origin)).collect();
        assert_eq!(
            names,
            [("DB", SecretOrigin::Set), ("KEY", SecretOrigin::Generated)]
        );
        assert!(list.iter().all(|m| m.rotated_at.is_none()));
        assert_eq!(
            s.secret_values("shop").unwrap(),
            [
                ("DB".to_owned(), b"c2".to_vec()),
                ("KEY".to_owned(), b"c1".to_vec())
            ]
        );

        // Replacing keeps created_at and records the rotation.
        let created = list[1].created_at;
        assert!(
            s.put_secret("shop", "KEY", b"c4", SecretOrigin::Generated)
                .unwrap()
        );
        let key = s.secrets("shop").unwrap().remove(1);
        assert_eq!(key.created_at, created);
        assert!(key.rotated_at.is_some_and(|t| t >= created));
        assert_eq!(
            s.secret("shop", "KEY").unwrap().as_deref(),
            Some(&b"c4"[..])
        );

        assert!(s.delete_secret("shop", "KEY").unwrap());
        assert!(!s.delete_secret("shop", "KEY").unwrap());
        assert_eq!(s.secret("shop", "KEY").unwrap(), None);
        assert_eq!(s.secrets("shop.staging").unwrap().len(), 1);
    }

    #[test]
    fn kept_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Store::open(&path)
            .unwrap()
            .put_secret("shop", "K", &[0, 1, 2, 255], SecretOrigin::Set)
            .unwrap();
        let s = Store::open(&path).unwrap();
        assert_eq!(s.secret("shop", "K").unwrap(), Some(vec![0, 1, 2, 255]));
    }
}
