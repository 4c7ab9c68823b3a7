//! The exports checked by the tools that consume them: systemd-analyze, nft, ufw, promtool,
//! kubernetes-validate. A missing tool fails its test with the package to install
//! (`scripts/test` installs them all).
#![allow(clippy::disallowed_methods)]
// The tests print what the tools said (the security score, promtool's summary).
#![allow(clippy::print_stdout)]

mod firewall;
mod grafana;
mod kubernetes;
mod prometheus;
mod secrets;
mod systemd;

use std::path::Path;
use std::process::{Command, Output};

/// The app every test exports: services with health, limits, images and autoscaling; routes
/// with zones, a static SPA, TLS by ACME; secrets referenced from `[env]`; a PostgreSQL backup.
pub const SHOP: &str = r#"
[app]
name = "shop"

[env]
NODE_ENV = "production"
DB = "${DATABASE_URL}"
GREETING = "hello $(not a reference) from ${NODE_ENV}"

[secrets]
SESSION_KEY = { generate = "base64:32" }
DATABASE_URL = { required = true }

[services.web]
command = "node build/index.js"
image = "ghcr.io/acme/shop-web:1.4.2"
instances = 2
health = { path = "/health/ready", interval = "2s", timeout = "1s", healthy_after = 2 }
stop_timeout = "30s"
memory_max = "512M"
cpu_max = "50%"
autoscale = { min = 2, max = 10, cpu = "70%" }

[services.worker]
command = "node worker.js"
image = "ghcr.io/acme/shop-worker:1.4.2"

[[routes]]
host = "shop.example.com"
path = "/api/"
service = "web"
rate_limit = "api"

[[routes]]
host = "shop.example.com"
path = "/"
static = "build/client"
spa = true

[proxy]
rate_limits = { api = "50/s burst 100", auth = "5/m burst 5" }

[tls]
acme = { email = "ops@example.com" }

[databases.main]
engine = "postgres"
url = "${DATABASE_URL}"

[backups.nightly]
database = "main"
schedule = "0 2 * * *"

[alerts]
p95_latency = { warn = "300ms", critical = "2s", for = "2m" }
restarts = { warn = 2, critical = 5, within = "10m" }
"#;

pub fn shop() -> spec::AppSpec {
    spec::parse("berth.toml", SHOP).unwrap_or_else(|d| panic!("{d}"))
}

/// `program`, or a failure that says how to get it.
pub fn tool(program: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "`{program}` is not installed: install {package} (scripts/test does)"
    );
    Command::new(program)
}

/// Runs `cmd`, failing the test with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    testkit::assert_success(&format!("{cmd:?}"), &out);
    out
}

pub fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
