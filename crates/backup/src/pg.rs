//! PostgreSQL: a logical dump in one consistent snapshot, restores with `pg_restore`, and the
//! scratch databases of drills.
//!
//! A backup opens a `REPEATABLE READ` transaction, exports its snapshot, starts
//! `pg_dump --format=custom --compress=0 --snapshot=…` on it, and counts every table's rows in
//! that same snapshot while the dump streams: the counts in the manifest describe exactly the
//! rows in the dump. Credentials reach the tools through `PG*` variables, never argv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use supervisor::command::{Child, Command};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

use crate::failure::{At, Failure, Stage, tail};

/// How long to wait for the server to answer a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The stderr kept from a tool, for its failure message.
const STDERR_KEPT: usize = 64 * 1024;

/// A PostgreSQL database, from its URL.
#[derive(Clone)]
pub struct Postgres {
    /// Boxed: a `Config` is large, and a `Postgres` sits in every job's `Source`.
    config: Box<Config>,
    shown: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Postgres({})", self.shown)
    }
}

impl Postgres {
    /// Parses a `postgres://` URL (or a `key=value` connection string). The error never quotes
    /// the URL, which may hold a password.
    pub fn parse(url: &str) -> Result<Postgres, String> {
        let mut config =
            Config::from_str(url).map_err(|e| format!("not a PostgreSQL connection URL ({e})"))?;
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or("postgres").to_owned();
            config.dbname(&user);
        }
        let host = match &config.get_hosts()[0] {
            Host::Tcp(h) => h.clone(),
            Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let shown = format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default());
        Ok(Postgres {
            config: Box::new(config),
            shown,
        })
    }

    /// `host:port/database`, for messages and manifests.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, db: &str) -> Postgres {
        let mut config = self.config.clone();
        config.dbname(db);
        let shown = format!(
            "{}/{db}",
            self.shown.rsplit_once('/').map_or("", |(s, _)| s)
        );
        Postgres { config, shown }
    }

    /// The variables that tell libpq tools where to connect and as whom.
    fn env(&self) -> Vec<(&'static str, String)> {
        let c = &self.config;
        let mut env = vec![("PGDATABASE", self.database().to_owned())];
        if let Some(host) = c.get_hosts().first() {
            let host = match host {
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            };
            env.push(("PGHOST", host));
        }
        if let Some(port) = c.get_ports().first() {
            env.push(("PGPORT", port.to_string()));
        }
        if let Some(user) = c.get_user() {
            env.push(("PGUSER", user.to_owned()));
        }
        if let Some(password) = c.get_password() {
            env.push(("PGPASSWORD", String::from_utf8_lossy(password).into_owned()));
        }
        let sslmode = match c.get_ssl_mode() {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            _ => "prefer",
        };
        env.push(("PGSSLMODE", sslmode.to_owned()));
        let timeout = c.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
        env.push(("PGCONNECT_TIMEOUT", timeout.as_secs().max(1).to_string()));
        env
    }

    /// A client connection (its driver runs on a task of its own).
    pub(crate) async fn connect(&self) -> Result<(Client, JoinHandle<()>), String> {
        if self.config.get_ssl_mode() == SslMode::Require {
            return Err(format!(
                "{}: sslmode=require is not supported for backups yet; connect over loopback \
                 or a private network with sslmode=prefer",
                self.shown
            ));
        }
        let (client, conn) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| format!("cannot connect to {}: {}", self.shown, describe(&e)))?;
        let driver = tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "postgres connection ended");
            }
        });
        Ok((client, driver))
    }
}

/// A PostgreSQL error with its server message (tokio-postgres's `Display` says only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Where `pg_dump` and `pg_restore` are found: `bin_dir` when set (tests, unusual installs),
/// else the Debian layout `/usr/lib/postgresql/MAJOR/bin` for the server's major version (the
/// oldest installed that is at least as new), else `PATH`.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub bin_dir: Option<PathBuf>,
}

impl Tools {
    fn find(&self, tool: &str, server_major: u32) -> PathBuf {
        if let Some(dir) = &self.bin_dir {
            return dir.join(tool);
        }
        let mut installed: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                let path = e.path().join("bin").join(tool);
                path.is_file().then_some((major, path))
            })
            .filter(|(major, _)| *major >= server_major)
            .collect();
        installed.sort();
        match installed.into_iter().next() {
            Some((_, path)) => path,
            None => PathBuf::from(tool),
        }
    }
}

/// `pg_dump` streaming on stdout.
pub(crate) struct Dump {
    pub child: Child,
    pub stderr: JoinHandle<Vec<u8>>,
    pub tool: PathBuf,
    pub server_version: String,
}

/// The transaction whose snapshot the dump reads, held open until the dump has ended.
pub(crate) struct Snapshot {
    client: Client,
    driver: JoinHandle<()>,
}

/// Opens the snapshot and starts `pg_dump` on it.
pub(crate) async fn start_dump(db: &Postgres, tools: &Tools) -> Result<(Dump, Snapshot), Failure> {
    let (client, driver) = db.connect().await.at(Stage::Snapshot)?;
    let q = async {
        client
            // The counts run beside pg_dump: one process for them, not a parallel scan that
            // would take the cores the dump needs.
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
                 SET LOCAL max_parallel_workers_per_gather = 0",
            )
            .await?;
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await?
            .get(0);
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), \
                 current_setting('server_version_num')::int",
                &[],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>((snapshot, row.get::<_, String>(0), row.get::<_, i32>(1)))
    };
    let (snapshot, server_version, version_num) = q
        .await
        .map_err(|e| Failure::new(Stage::Snapshot, format!("{}: {}", db.shown, describe(&e))))?;
    let tool = tools.find("pg_dump", (version_num / 10000) as u32);
    let mut child = Command::new(&tool)
        .args([
            "--format=custom",
            "--compress=0",
            "--no-password",
            &format!("--snapshot={snapshot}"),
        ])
        .envs(db.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await
        .map_err(|e| Failure::new(Stage::Dump, format!("cannot run {}: {e}", tool.display())))?;
    let stderr = keep_stderr(&mut child);
    let dump = Dump {
        child,
        stderr,
        tool,
        server_version,
    };
    Ok((dump, Snapshot { client, driver }))
}

impl Snapshot {
    /// Row counts of every table in the dump's snapshot; the transaction ends once `dumped`
    /// fires (or is dropped), as `pg_dump` needs the snapshot until it has started reading.
    pub async fn count_and_close(
        self,
        dumped: tokio::sync::oneshot::Receiver<()>,
    ) -> Result<BTreeMap<String, u64>, Failure> {
        let counts = count_rows(&self.client)
            .await
            .map_err(|e| Failure::new(Stage::Snapshot, format!("count rows: {}", describe(&e))));
        let _ = dumped.await;
        let _ = self.client.batch_execute("COMMIT").await;
        drop(self.client);
        let _ = self.driver.await;
        counts
    }
}

/// Rows of every ordinary table outside the system schemas and extensions, by `schema.table`.
async fn count_rows(client: &Client) -> Result<BTreeMap<String, u64>, tokio_postgres::Error> {
    let tables = client
        .query(
            "SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                                 AND d.deptype = 'e') \
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    let mut counts = BTreeMap::new();
    for t in tables {
        let (schema, name, quoted): (String, String, String) = (t.get(0), t.get(1), t.get(2));
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {quoted}"), &[])
            .await?
            .get(0);
        counts.insert(format!("{schema}.{name}"), n as u64);
    }
    Ok(counts)
}

/// Row counts of `db` now.
pub(crate) async fn counts(db: &Postgres) -> Result<BTreeMap<String, u64>, String> {
    let (client, driver) = db.connect().await?;
    let counts = count_rows(&client).await.map_err(|e| describe(&e));
    drop(client);
    let _ = driver.await;
    counts
}

/// The server's major version.
async fn server_major(db: &Postgres) -> Result<u32, String> {
    let (client, driver) = db.connect().await?;
    let v = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| describe(&e));
    drop(client);
    let _ = driver.await;
    Ok((v?.get::<_, i32>(0) / 10000) as u32)
}

/// How a `pg_restore` treats what it restores into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Into {
    /// The app's own database: drop what the dump holds and create it again, all in one
    /// transaction, so a failure leaves the database as it was.
    Replace,
    /// A scratch database made for a drill: ownership and grants are left out (its roles may
    /// not exist there).
    Scratch,
}

/// Starts `pg_restore` into `db`, reading the dump on stdin.
pub(crate) async fn start_restore(
    db: &Postgres,
    tools: &Tools,
    into: Into,
) -> Result<(Child, JoinHandle<Vec<u8>>, PathBuf), Failure> {
    let major = server_major(db).await.at(Stage::Restore)?;
    let tool = tools.find("pg_restore", major);
    let mut args = vec![
        "--single-transaction",
        "--exit-on-error",
        "--no-password",
        "--no-owner",
    ];
    match into {
        Into::Replace => args.extend(["--clean", "--if-exists"]),
        Into::Scratch => args.push("--no-privileges"),
    }
    args.push("--dbname");
    args.push(db.database());
    let mut child = Command::new(&tool)
        .args(&args)
        .envs(db.env())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .await
        .map_err(|e| {
            Failure::new(
                Stage::Restore,
                format!("cannot run {}: {e}", tool.display()),
            )
        })?;
    let stderr = keep_stderr(&mut child);
    Ok((child, stderr, tool))
}

/// Waits for a tool; a failure with its exit status and stderr's tail when it did not succeed.
pub(crate) async fn finish_tool(
    mut child: Child,
    stderr: JoinHandle<Vec<u8>>,
    tool: &Path,
    stage: Stage,
) -> Result<(), Failure> {
    let status = child.wait().await.at(stage)?;
    let stderr = stderr.await.unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let name = tool.file_name().unwrap_or_default().to_string_lossy();
    let why = tail(&stderr);
    Err(Failure::new(
        stage,
        if why.is_empty() {
            format!("{name} {}", exit(status))
        } else {
            format!("{name} {}: {why}", exit(status))
        },
    ))
}

fn exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "failed".to_owned(),
    }
}

fn keep_stderr(child: &mut Child) -> JoinHandle<Vec<u8>> {
    let pipe = child.stderr.take();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(mut pipe) = pipe {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > STDERR_KEPT {
                    kept.drain(..kept.len() - STDERR_KEPT);
                }
            }
        }
        kept
    })
}

/// A scratch database for a drill, on `server` (the app's database or `verify_url`); dropped
/// by [`drop_scratch`].
pub(crate) async fn create_scratch(server: &Postgres, id: &str) -> Result<Postgres, Failure> {
    let name = format!("berth_drill_{}", id.to_ascii_lowercase().replace('-', "_"));
    let (client, driver) = server.connect().await.at(Stage::Restore)?;
    let created = client
        .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
        .await
        .map_err(|e| {
            Failure::new(
                Stage::Restore,
                format!(
                    "cannot create the drill's scratch database {name} on {}: {} (give the \
                     role CREATEDB, or set verify_url to a server where it may)",
                    server.shown,
                    describe(&e)
                ),
            )
        });
    drop(client);
    let _ = driver.await;
    created?;
    Ok(server.with_database(&name))
}

pub(crate) async fn drop_scratch(server: &Postgres, scratch: &Postgres) -> Result<(), Failure> {
    let (client, driver) = server.connect().await.at(Stage::Cleanup)?;
    let dropped = client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            scratch.database()
        ))
        .await
        .map_err(|e| {
            Failure::new(
                Stage::Cleanup,
                format!("drop {}: {}", scratch.shown, describe(&e)),
            )
        });
    drop(client);
    let _ = driver.await;
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_shows_no_password_and_hands_it_over_in_the_environment() {
        let db = Postgres::parse("postgres://shop:hunter2@db.internal:6432/shop").unwrap();
        assert_eq!(db.shown(), "db.internal:6432/shop");
        assert!(!format!("{db:?}").contains("hunter2"));
        let env = db.env();
        assert!(env.contains(&("PGPASSWORD", "hunter2".to_owned())));
        assert!(env.contains(&("PGHOST", "db.internal".to_owned())));
        assert_eq!(db.with_database("x").shown(), "db.internal:6432/x");
        let err = Postgres::parse("postgres://shop:hunter2@db:notaport/shop").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
