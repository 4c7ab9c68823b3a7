//! A throwaway PostgreSQL cluster on loopback: `initdb` into a temporary directory, the
//! postmaster started as a child with durability off (fsync, synchronous commit and full page
//! writes: a test's data need not survive a crash of the machine), killed on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests are root the server binaries run as
//! the `postgres` system user (the Debian package creates it) in a directory under `/var/tmp`
//! handed to that user; otherwise they run as whoever runs the tests. Clients (`psql`,
//! `pgbench`) connect over TCP with the superuser's password, as berth will, so every
//! connection goes through password authentication (`scram-sha-256`); only the unix socket,
//! inside the temporary directory, trusts its peers.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::assert_success;
use crate::port::free_port;

/// The superuser's name.
const USER: &str = "postgres";
/// The superuser's password: a fixed value, the server is private to the test.
const PASSWORD: &str = "berth-test-password";
/// Debian's home of the server binaries, one directory per major version.
const DEBIAN_DIR: &str = "/usr/lib/postgresql";
/// The version berth is tested against (Debian 12's).
const PREFERRED_VERSION: u32 = 15;

/// A PostgreSQL server on 127.0.0.1 with its cluster in a temporary directory; killed and
/// removed on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// The postmaster; `None` once [`Postgres::kill`] took it.
    server: Option<Child>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Postgres {
    /// Creates a cluster and starts its server; returns once it accepts connections over TCP
    /// (blocking, up to 30 s). Takes well under a second on an idle machine.
    pub fn start() -> Postgres {
        let bin = find_bin_dir();
        // Under /var/tmp rather than $TMPDIR, which may lie inside a directory the postgres
        // user cannot enter (/root).
        let dir = crate::state_dir("berth-postgres-");
        let pwfile = dir.path().join("password");
        std::fs::write(&pwfile, PASSWORD).expect("write the password file");
        let owner = server_user();
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), &pwfile] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .expect("hand the cluster's directory to the postgres user");
            }
        }

        let data = dir.path().join("data");
        let initdb = server_command(&bin.join("initdb"), dir.path(), owner)
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", USER, "--pwfile"])
            .arg(&pwfile)
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["--encoding=UTF8", "--locale=C.UTF-8"])
            // Nothing is flushed to disk: the cluster lives as long as the test.
            .args(["--no-sync", "--no-instructions"])
            .output()
            .expect("run initdb");
        assert_success("initdb", &initdb);
        let _ = std::fs::remove_file(&pwfile);

        let port = free_port();
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let settings = [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("port={port}"),
            format!("unix_socket_directories={}", dir.path().display()),
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            "shared_buffers=16MB".to_owned(),
        ];
        let server = server_command(&bin.join("postgres"), dir.path(), owner)
            .arg("-D")
            .arg(&data)
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut postgres = Postgres {
            dir,
            bin,
            port,
            server: Some(server),
        };
        let limit = Duration::from_secs(30);
        crate::wait_for("postgres to accept connections", limit, || {
            if let Some(server) = &mut postgres.server
                && let Ok(Some(status)) = server.try_wait()
            {
                panic!("postgres exited ({status}):\n{}", postgres.log());
            }
            postgres.ready()
        });
        postgres
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        PASSWORD
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/db`: the superuser on database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// The directory of the server and client binaries (`pg_dump`, `pg_restore`, `psql`...),
    /// of the same version as the server.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Whether the server accepts connections now (`pg_isready`).
    pub fn ready(&self) -> bool {
        self.client("pg_isready")
            .args(["--quiet", "--timeout=2", "--dbname=postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs `sql` in database `db` with `psql -Atq` as the superuser over TCP and returns its
    /// output, trimmed; panics with psql's errors when it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client("psql")
            .args(["--no-psqlrc", "--no-align", "--tuples-only", "--quiet"])
            .args(["--set=ON_ERROR_STOP=1", "--command", sql, "--dbname", db])
            .output()
            .expect("run psql");
        assert_success(&format!("psql {db}: {sql}"), &out);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Creates database `name`.
    pub fn create_db(&self, name: &str) {
        let name = name.replace('"', "\"\"");
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// The number of rows in `table` of database `db`.
    pub fn count(&self, db: &str, table: &str) -> i64 {
        let out = self.psql(db, &format!("SELECT count(*) FROM {table}"));
        out.parse()
            .unwrap_or_else(|_| panic!("count of {table}: {out:?}"))
    }

    /// Fills database `db` with pgbench's tables (`pgbench -i -s SCALE`): 100 000 rows of
    /// `pgbench_accounts` per unit of scale, about 15 MB.
    pub fn pgbench_init(&self, db: &str, scale: u32) {
        let out = self
            .client("pgbench")
            .args(["--initialize", "--quiet", "--scale"])
            .arg(scale.to_string())
            .arg(db)
            .output()
            .expect("run pgbench");
        assert_success(&format!("pgbench -i -s {scale} {db}"), &out);
    }

    /// Starts writing load on database `db`, initialised by [`Postgres::pgbench_init`]: two
    /// clients running pgbench's TPC-B transactions for `duration` (whole seconds, at least
    /// one). The caller waits for the child or kills it; its stdout and stderr are piped.
    pub fn pgbench_load(&self, db: &str, duration: Duration) -> Child {
        let secs = (duration.as_secs() + u64::from(duration.subsec_nanos() > 0)).max(1);
        self.client("pgbench")
            .args(["--client=2", "--no-vacuum", "--time"])
            .arg(secs.to_string())
            .arg(db)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgbench")
    }

    /// Stops the server abruptly (an immediate shutdown: no checkpoint, connections cut), so
    /// that the database is unreachable from now on. Drop does the same.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let pid = nix::unistd::Pid::from_raw(server.id() as i32);
            // SIGQUIT: the postmaster kills its backends and exits; they go with it.
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT).is_err() {
                let _ = server.kill();
            }
            let _ = server.wait();
        }
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A client program connecting as the superuser to this server over TCP.
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command
            .args(["--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(["--username", USER])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null());
        command
    }
}

/// The uid and gid to run the server as: the `postgres` user when the tests are root (the
/// server refuses root), none otherwise.
fn server_user() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name(USER)
        .ok()
        .flatten()
        .expect("PostgreSQL refuses to run as root: a `postgres` user must exist (Debian package postgresql-15)");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

/// A server program (`initdb`, `postgres`) run in `dir` as `owner`.
fn server_command(program: &Path, dir: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    // std drops the supplementary groups when it changes the uid.
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command.current_dir(dir).stdin(Stdio::null());
    command
}

/// The server binaries: Debian's version 15, else the newest version Debian's layout has, else
/// `pg_config --bindir`.
fn find_bin_dir() -> PathBuf {
    let debian = Path::new(DEBIAN_DIR);
    let has_server = |version: &u32| debian.join(format!("{version}/bin/initdb")).is_file();
    let version = if has_server(&PREFERRED_VERSION) {
        Some(PREFERRED_VERSION)
    } else {
        std::fs::read_dir(debian)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(has_server)
            .max()
    };
    if let Some(version) = version {
        return debian.join(format!("{version}/bin"));
    }
    let pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|dir| dir.join("initdb").is_file());
    pg_config.expect(
        "PostgreSQL's server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin \
         nor by pg_config: install postgresql-15 (scripts/test does)",
    )
}
