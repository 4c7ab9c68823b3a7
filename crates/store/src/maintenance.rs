//! Maintenance mode as the operator set it (`berth maintenance on APP`): one row per app, so
//! that it survives a restart of the daemon. A restore's maintenance lives in memory only.

use std::time::SystemTime;

use rusqlite::params;

use crate::{Result, Store, from_millis, to_millis};

/// An app the operator put in maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maintenance {
    pub app: String,
    /// What the default maintenance page says (may be empty).
    pub message: String,
    /// When it was put in maintenance (kept when only the message changes).
    pub since: SystemTime,
}

impl Store {
    /// Puts `app` in maintenance with `message`, or replaces the message of one that is.
    pub fn set_maintenance(&mut self, app: &str, message: &str) -> Result<Maintenance> {
        let now = to_millis(SystemTime::now());
        let since: i64 = self.conn.query_row(
            "INSERT INTO maintenance (app, message, since) VALUES (?1, ?2, ?3)
             ON CONFLICT (app) DO UPDATE SET message = excluded.message
             RETURNING since",
            params![app, message, now],
            |r| r.get(0),
        )?;
        Ok(Maintenance {
            app: app.to_owned(),
            message: message.to_owned(),
            since: from_millis(since),
        })
    }

    /// Takes `app` out of maintenance; whether it was in.
    pub fn clear_maintenance(&mut self, app: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM maintenance WHERE app = ?1", params![app])?
            > 0)
    }

    /// Every app in maintenance, by name.
    pub fn maintenance(&self) -> Result<Vec<Maintenance>> {
        let mut stmt = self
            .conn
            .prepare("SELECT app, message, since FROM maintenance ORDER BY app")?;
        let rows = stmt.query_map([], |r| {
            Ok(Maintenance {
                app: r.get(0)?,
                message: r.get(1)?,
                since: from_millis(r.get(2)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_is_set_updated_listed_and_cleared() {
        let mut s = Store::open_in_memory().unwrap();
        assert_eq!(s.maintenance().unwrap(), []);
        let first = s.set_maintenance("shop", "back at 5").unwrap();
        s.set_maintenance("blog", "").unwrap();
        let again = s.set_maintenance("shop", "back at 6").unwrap();
        assert_eq!(again.since, first.since, "a new message keeps `since`");
        let listed = s.maintenance().unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|m| (m.app.as_str(), m.message.as_str()))
                .collect::<Vec<_>>(),
            [("blog", ""), ("shop", "back at 6")]
        );
        assert!(s.clear_maintenance("shop").unwrap());
        assert!(!s.clear_maintenance("shop").unwrap());
        assert_eq!(s.maintenance().unwrap().len(), 1);
    }
}
