//! Numbered schema migrations. Append only: a released migration is never edited.

use rusqlite::Connection;

use crate::{Error, Result};

/// Migration N (1-based) brings the schema from version N-1 to N.
pub const MIGRATIONS: &[&str] = &[
    // 1: apps, releases, deploys, process groups, events
    "CREATE TABLE apps (
        name            TEXT PRIMARY KEY,
        current_release TEXT,
        release_seq     INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL
    );
    CREATE TABLE releases (
        app        TEXT NOT NULL REFERENCES apps(name),
        id         TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        digest     TEXT NOT NULL,
        status     TEXT NOT NULL,
        PRIMARY KEY (app, id)
    );
    CREATE TABLE deploys (
        id          INTEGER PRIMARY KEY,
        app         TEXT NOT NULL,
        release     TEXT NOT NULL,
        user        TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        result      TEXT NOT NULL,
        reason      TEXT
    );
    CREATE INDEX deploys_app ON deploys(app, id);
    CREATE TABLE processes (
        app      TEXT NOT NULL,
        service  TEXT NOT NULL,
        release  TEXT NOT NULL,
        instance INTEGER NOT NULL,
        pgid     INTEGER NOT NULL,
        PRIMARY KEY (app, service, release, instance)
    );
    CREATE TABLE events (
        id     INTEGER PRIMARY KEY,
        at     INTEGER NOT NULL,
        app    TEXT NOT NULL,
        kind   TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_app ON events(app, id);",
    // 2: deploys become a persisted state machine: kind, current step, failed gate, and the
    // release that was live when it began
    "ALTER TABLE deploys ADD COLUMN kind TEXT NOT NULL DEFAULT 'deploy';
    ALTER TABLE deploys ADD COLUMN step TEXT NOT NULL DEFAULT 'done';
    ALTER TABLE deploys ADD COLUMN gate TEXT;
    ALTER TABLE deploys ADD COLUMN from_release TEXT;",
    // 3: secret values, encrypted by the caller (the store only ever sees ciphertext), per app
    // instance name (`shop`, `shop.staging`); no foreign key, as a secret may be set before the
    // first deploy
    "CREATE TABLE secrets (
        app        TEXT NOT NULL,
        name       TEXT NOT NULL,
        ciphertext BLOB NOT NULL,
        origin     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        rotated_at INTEGER,
        PRIMARY KEY (app, name)
    );",
    // 4: process groups of short jobs (builds, hooks, backup tools), swept at start like the
    // instances' if the daemon died while they ran
    "CREATE TABLE jobs (
        pgid       INTEGER PRIMARY KEY,
        app        TEXT NOT NULL,
        what       TEXT NOT NULL,
        started_at INTEGER NOT NULL
    );",
    // 5: the old release drains after the rollout's result is known: when it was stopped
    "ALTER TABLE deploys ADD COLUMN drained_at INTEGER;",
    // 6: backups (the manifest and the last drill's receipt as JSON) and when each backup
    // definition is due next, so that a schedule missed while the daemon was down runs at start
    "CREATE TABLE backups (
        app         TEXT NOT NULL,
        id          TEXT NOT NULL,
        name        TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        status      TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        stage       TEXT,
        error       TEXT,
        manifest    TEXT,
        drill       TEXT,
        PRIMARY KEY (app, id)
    );
    CREATE INDEX backups_name ON backups(app, name, started_at);
    CREATE TABLE backup_schedules (
        app      TEXT NOT NULL,
        name     TEXT NOT NULL,
        next_due INTEGER NOT NULL,
        PRIMARY KEY (app, name)
    );",
    // 7: when a rollout switched traffic to its release (none if it never did): where a
    // change starts to count, and where time to restore is measured from
    "ALTER TABLE deploys ADD COLUMN switched_at INTEGER;",
    // 8: maintenance mode set by the operator (`berth maintenance on`), kept across restarts;
    // a restore's maintenance is not stored
    "CREATE TABLE maintenance (
        app     TEXT PRIMARY KEY,
        message TEXT NOT NULL,
        since   INTEGER NOT NULL
    );",
    // 9: instances outlive the daemon; the next one adopts a recorded process only if it is
    // still the same (pid = pgid and this start time, in clock ticks after boot) and serves on
    // the same port (0: recorded before this migration, never adopted)
    // and the warm standby of each app, so that its instances are adopted too
    "ALTER TABLE processes ADD COLUMN start_ticks INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE processes ADD COLUMN port INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE standbys (
        app           TEXT PRIMARY KEY,
        release       TEXT NOT NULL,
        until         INTEGER NOT NULL,
        deploy        INTEGER NOT NULL,
        grace_ms      INTEGER NOT NULL,
        keep_releases INTEGER NOT NULL
    );",
];

pub(crate) fn apply(conn: &mut Connection) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(Error::TooNew { found, known });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
