//! The closed sets of words berth records and reports about rollouts and releases. Each is an
//! enum that reads and writes as the same lowercase word everywhere: in JSON on the wire, in
//! `state.db` (with the `sql` feature), and in what the CLI prints.

/// An enum whose every variant is one fixed word: `as_str`, `Display`, `FromStr`, serde, and
/// (with the `sql` feature) `ToSql`/`FromSql`, all from one table.
macro_rules! words {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord { what: stringify!($name), word: s.to_owned() }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let word = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                word.parse().map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "sql")]
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        #[cfg(feature = "sql")]
        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?
                    .parse()
                    .map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

/// A word that is not one of the values of a vocabulary enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{word}` is not a known {what}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}

words! {
    /// What started a rollout.
    pub enum DeployKind {
        /// A new release from an uploaded source tree (`berth deploy`).
        Deploy = "deploy",
        /// Back to a kept release (`berth rollback`).
        Rollback = "rollback",
        /// The live release's files again, with a fresh environment (after a secret rotation).
        Restart = "restart",
    }
}

words! {
    /// The step a rollout has reached, recorded before the step runs.
    pub enum Step {
        Build = "build",
        Start = "start",
        /// Smoke checks through the new release's own routes, before the switch.
        Smoke = "smoke",
        /// Canary steps: a share of clients on the new release.
        Canary = "canary",
        Switch = "switch",
        Watch = "watch",
        Workers = "workers",
        Drain = "drain",
        Done = "done",
    }
}

words! {
    /// The check a failed rollout did not pass.
    pub enum Gate {
        /// The upload did not unpack, or its berth.toml is invalid or conflicts with another app.
        Unpack = "unpack",
        /// A required secret is missing or invalid.
        Secrets = "secrets",
        /// The app's user could not be found or made.
        User = "user",
        Build = "build",
        /// `[tls]` cannot work on this server (cert files, wildcard names, no HTTPS listener).
        Tls = "tls",
        /// An instance did not become ready (or the rollout could not begin).
        Start = "start",
        /// A smoke check answered wrong through the new release's routes (before the switch).
        Smoke = "smoke",
        /// A canary step went bad: the share of clients on the new release goes back.
        Canary = "canary",
        Watch = "watch",
        Workers = "workers",
    }
}

impl Gate {
    /// Gates checked once the release had traffic (a canary share or all of it): failing one
    /// switches traffic back.
    pub fn after_switch(self) -> bool {
        matches!(self, Gate::Canary | Gate::Watch | Gate::Workers)
    }
}

words! {
    /// How a rollout ended (or that it has not).
    pub enum DeployResult {
        Running = "running",
        Ok = "ok",
        /// Stopped before the switch; the previous release kept serving.
        Failed = "failed",
        /// Failed after the switch; traffic went back to the previous release.
        RolledBack = "rolled-back",
        /// The daemon stopped during the rollout.
        Interrupted = "interrupted",
    }
}

words! {
    /// Where a release stands.
    pub enum ReleaseStatus {
        /// Unpacked, being built or started.
        Pending = "pending",
        /// Has served traffic (it is or was current).
        Live = "live",
        /// Build or start failed; never served.
        Failed = "failed",
        /// Its tree was deleted to keep only the newest releases.
        Pruned = "pruned",
    }
}

words! {
    /// A release as `berth releases` shows it: what it is to the app now.
    pub enum ReleaseState {
        /// Serving traffic.
        Live = "live",
        /// What `berth rollback APP` goes back to.
        Previous = "previous",
        /// Served, and a rollback took traffic away from it: never a plain rollback's target.
        RolledBack = "rolled-back",
        /// Served before and kept on disk: `berth rollback APP --to ID` can go back to it.
        Kept = "kept",
        /// Being built or started by a rollout in progress.
        Pending = "pending",
        /// Its rollout failed before it served; its files go at the next prune.
        Failed = "failed",
        /// Its files were deleted to keep only the newest releases.
        Pruned = "pruned",
    }
}

words! {
    /// A part of a rollout, as shown to the client that asked for it.
    pub enum Phase {
        /// Queued behind another rollout of the app (`--wait`).
        Wait = "wait",
        Unpack = "unpack",
        /// The live release's files are linked into a new release.
        Restart = "restart",
        Build = "build",
        Start = "start",
        Smoke = "smoke",
        /// A share of clients on the new release.
        Canary = "canary",
        Switch = "switch",
        /// A warm standby of the release took traffic back.
        Standby = "standby",
        Watch = "watch",
        Workers = "workers",
        /// Switching back to the previous release after a failed check.
        Rollback = "rollback",
        Drain = "drain",
    }
}

words! {
    /// How a secret got its value.
    pub enum SecretOrigin {
        /// Made by berth from `generate = "KIND:LEN"`.
        Generated = "generated",
        /// Given by the operator (`berth secrets set`).
        Set = "set",
    }
}

words! {
    /// Where an app's certificate comes from.
    pub enum CertSource {
        Acme = "acme",
        SelfSigned = "self-signed",
        Files = "files",
    }
}

words! {
    /// Where a backup stands.
    pub enum BackupStatus {
        Running = "running",
        /// Every stage succeeded, the object read back with its sha256, the manifest written.
        Ok = "ok",
        Failed = "failed",
        /// Removed by retention.
        Deleted = "deleted",
    }
}

words! {
    /// Why a backup was made.
    pub enum BackupTrigger {
        Schedule = "schedule",
        /// `berth backup run`.
        Manual = "manual",
        /// Before a restore, of what the restore replaces.
        Safety = "safety",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back() {
        for kind in DeployKind::ALL {
            assert_eq!(kind.as_str().parse::<DeployKind>(), Ok(*kind));
        }
        for step in Step::ALL {
            let json = serde_json::to_string(step).unwrap();
            assert_eq!(json, format!("\"{step}\""));
            assert_eq!(serde_json::from_str::<Step>(&json).unwrap(), *step);
        }
        assert_eq!(DeployResult::RolledBack.to_string(), "rolled-back");
        assert_eq!(CertSource::SelfSigned.to_string(), "self-signed");
        // Columns in the CLI's tables line up.
        assert_eq!(format!("[{:<8}]", ReleaseStatus::Live), "[live    ]");
    }

    #[test]
    fn unknown_words_are_named() {
        let err = "exploded".parse::<Gate>().unwrap_err();
        assert_eq!(err.to_string(), "`exploded` is not a known Gate");
        assert!(serde_json::from_str::<Gate>("\"exploded\"").is_err());
    }
}
