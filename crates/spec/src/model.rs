//! The typed model of one berth.toml: what [`crate::parse`] returns.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use crate::deploy::{CanaryStep, DeploySpec, SmokeCheck, SmokeHost};

use crate::kubernetes::Autoscale;
use crate::observe_model::{AlertsSpec, NotifySpec};
use crate::secrets::{SecretSpec, expand};
use crate::units::RateSpec;

/// One app, as described by its berth.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    /// `[app] name`: `[a-z0-9-]`, 1 to 40 characters, starts with a letter, unique per server.
    pub name: String,
    /// `[app] user = "www"`: an existing user the app runs as (never root). `None`: berth
    /// creates one for the app (`berth-APP`).
    pub user: Option<String>,
    /// `[build]`: run inside the new release directory before anything starts.
    pub build: Option<BuildSpec>,
    /// `[env]`: plain configuration injected into every service. Values may hold `${NAME}`
    /// references to secrets or other env keys, kept unexpanded here (see [`expand`] and
    /// [`AppSpec::resolve_env`]); every reference is known to be defined and acyclic.
    pub env: BTreeMap<String, String>,
    /// `[secrets]`: how each secret is made; the values live in the store, never here.
    pub secrets: BTreeMap<String, SecretSpec>,
    /// `[services.NAME]`: supervised processes.
    pub services: BTreeMap<String, ServiceSpec>,
    /// `[[routes]]`, in file order.
    pub routes: Vec<RouteSpec>,
    /// `[proxy]`: proxy-wide settings.
    pub proxy: ProxySpec,
    /// `[deploy]`: gates after the switch, releases kept.
    pub deploy: DeploySpec,
    /// `[tls]`: the certificate for the app's route hosts; `None` serves plain HTTP only.
    pub tls: Option<TlsSpec>,
    /// `[databases.NAME]`: the app's own databases, which berth backs up but does not run.
    pub databases: BTreeMap<String, DatabaseSpec>,
    /// `[backups.NAME]`: what is backed up, when, how long it is kept, where it goes.
    pub backups: BTreeMap<String, BackupSpec>,
    /// `[alerts]`: the thresholds the daemon watches; the defaults when the table is absent.
    pub alerts: AlertsSpec,
    /// `[[notify]]`, in file order: where alerts and events are sent. Empty: nowhere.
    pub notify: Vec<NotifySpec>,
    /// The environment applied (`--env NAME`), if any.
    pub environment: Option<String>,
    /// Names of all `[environments.NAME]` the file defines, sorted.
    pub environments: Vec<String>,
}

impl AppSpec {
    /// The name the app runs under on the server: `shop` without an environment,
    /// `shop.staging` with one. Releases, processes, secrets, routes, logs and the control
    /// API's `APP` are all keyed by it. `.` cannot occur in an app name, so an instance name
    /// never collides with another app; it is valid in paths and URLs as is.
    pub fn instance_name(&self) -> String {
        match &self.environment {
            Some(env) => format!("{}.{env}", self.name),
            None => self.name.clone(),
        }
    }

    /// The host a smoke check is sent with: its own `host`, else the first exact route host,
    /// else `www.` under the first wildcard route, else (every route is `*`) `localhost`.
    pub fn smoke_host(&self, check: &SmokeCheck) -> SmokeHost {
        if let Some(host) = &check.host {
            return SmokeHost::Given(host.clone());
        }
        let hosts = || self.routes.iter().map(|r| r.host.as_str());
        if let Some(host) = hosts().find(|h| !h.contains('*')) {
            return SmokeHost::Route(host.to_owned());
        }
        match hosts().find_map(|h| h.strip_prefix("*.")) {
            Some(parent) => SmokeHost::UnderWildcard {
                host: format!("www.{parent}"),
                pattern: format!("*.{parent}"),
            },
            None => SmokeHost::Any,
        }
    }

    /// The environment of a service process: every secret (value from `secret`; ones it does
    /// not know are left out) and every `[env]` value with its `${NAME}` references expanded.
    pub fn resolve_env(&self, secret: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .secrets
            .keys()
            .filter_map(|name| Some((name.clone(), secret(name)?)))
            .collect();
        for (key, value) in &self.env {
            out.insert(key.clone(), self.expand_template(value, &secret));
        }
        out
    }

    /// Expands the `${NAME}` references of a template written in berth.toml (an `[env]` value,
    /// a database `url`): `[env]` values (themselves expanded) and secrets (value from
    /// `secret`), exactly as a service's environment gets them ([`AppSpec::resolve_env`]).
    /// A reference to a secret `secret` does not know is kept as written.
    pub fn expand_template(
        &self,
        template: &str,
        secret: impl Fn(&str) -> Option<String>,
    ) -> String {
        self.expand_nested(template, &secret, 0)
    }

    /// `depth` bounds the recursion through `[env]`, which [`crate::parse`] knows to be
    /// acyclic; the bound only guards a hand-built spec.
    fn expand_nested(
        &self,
        template: &str,
        secret: &impl Fn(&str) -> Option<String>,
        depth: u32,
    ) -> String {
        expand(template, |name| {
            if let Some(value) = self.env.get(name)
                && depth < 32
            {
                Some(self.expand_nested(value, secret, depth + 1))
            } else if self.secrets.contains_key(name) {
                secret(name)
            } else {
                None
            }
        })
    }
}

/// `[databases.NAME]`: a database of the app. berth does not run it; it backs it up and
/// restores it in drills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    pub engine: DatabaseEngine,
}

/// `engine = "postgres" | "sqlite"`, with the keys of that engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseEngine {
    /// `url = "${DATABASE_URL}"`, `verify_url = "${DRILL_DATABASE_URL}"`: templates like
    /// `[env]` values, kept unexpanded (resolve them with [`AppSpec::expand_template`]); every
    /// reference is known to be defined, and no password is written in the file.
    /// `verify_url` is where restore drills restore to; `None`: a scratch database on the
    /// server of `url`.
    Postgres {
        url: String,
        verify_url: Option<String>,
    },
    /// `path = "data/app.db"`: a file under the app's shared directory; normalized (no `.`,
    /// `..` or empty components), relative, never leaving that directory.
    Sqlite { path: String },
}

/// `[backups.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSpec {
    /// `database = "main"` or `dir = "uploads"`.
    pub source: BackupSource,
    /// `schedule = "0 2 * * *"`: as written, known to be valid: five cron fields (minute hour
    /// day-of-month month day-of-week) or `@hourly`, `@daily`, `@weekly`, `@monthly`, readable
    /// by the `croner` crate. Default [`BackupSpec::DEFAULT_SCHEDULE`].
    pub schedule: String,
    /// `keep = { last = 3, daily = 7, weekly = 4, monthly = 12 }`: the backups kept.
    pub keep: Keep,
    /// `to = "s3://bucket/prefix"` or `"/srv/backups"`.
    pub to: BackupTarget,
    /// `verify = "weekly"`: how often a backup is restored in a drill. Default weekly.
    pub verify: VerifyCadence,
}

impl BackupSpec {
    pub const DEFAULT_SCHEDULE: &str = "@daily";
}

/// What a backup copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupSource {
    /// `database = "main"`: a key of [`AppSpec::databases`].
    Database(String),
    /// `dir = "uploads"`: a directory under the app's shared directory; normalized like
    /// [`DatabaseEngine::Sqlite`]'s `path`.
    Dir(String),
}

/// How many backups are kept: the `last` ones, and the newest of each of the last `daily`
/// days, `weekly` weeks and `monthly` months. Each at most [`Keep::MAX`]; never all zero.
/// Keys left out of an explicit `keep` table are 0 (an `[environments.NAME]` overlay's `keep`
/// merges into the base's key by key, like every table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Keep {
    pub const MAX: u32 = 10_000;
}

/// When `keep` is left out.
impl Default for Keep {
    fn default() -> Self {
        Keep {
            last: 3,
            daily: 7,
            weekly: 4,
            monthly: 12,
        }
    }
}

/// Where backups are stored (`to`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupTarget {
    /// `to` left out: the daemon's `STATE/backups/APP`.
    Default,
    /// `to = "/srv/backups/shop"`: an absolute directory on the server.
    Local(PathBuf),
    /// `to = "s3://bucket/shop"`: an S3 (or compatible) bucket; the credentials are the
    /// secrets [`BackupTarget::S3_SECRETS`], the endpoint and region the optional
    /// `S3_ENDPOINT` and `S3_REGION` ([env] or [secrets]).
    S3 {
        /// 3 to 63 characters of `[a-z0-9.-]`, starting and ending with a letter or digit.
        bucket: String,
        /// Key prefix; may be empty, never with a leading or trailing `/`.
        prefix: String,
    },
}

impl BackupTarget {
    /// The secrets an app with an `s3://` target must declare.
    pub const S3_SECRETS: [&str; 2] = ["S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"];
}

/// How often a backup is restored in a drill (`verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyCadence {
    /// `"every"`: after every backup.
    Every,
    /// `"daily"`: the first backup of each day.
    Daily,
    /// `"weekly"`: the first backup of each week.
    #[default]
    Weekly,
    /// `"off"`: never.
    Off,
}

impl VerifyCadence {
    pub const ALL: [VerifyCadence; 4] = [
        VerifyCadence::Every,
        VerifyCadence::Daily,
        VerifyCadence::Weekly,
        VerifyCadence::Off,
    ];

    /// The word written in berth.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyCadence::Every => "every",
            VerifyCadence::Daily => "daily",
            VerifyCadence::Weekly => "weekly",
            VerifyCadence::Off => "off",
        }
    }
}

impl fmt::Display for VerifyCadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VerifyCadence {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        VerifyCadence::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| "expected every, daily, weekly or off".to_owned())
    }
}

/// `[tls]`: where the certificate for the app's route hosts ([`crate::certificate_names`]) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSpec {
    /// `acme = { email, directory?, challenge? }`: obtained and renewed from an ACME CA.
    /// Wildcard names are validated with DNS-01 through the daemon's hook whatever `challenge`
    /// says.
    Acme {
        email: String,
        /// The CA's directory URL; default Let's Encrypt.
        directory: String,
        challenge: AcmeChallenge,
    },
    /// `self_signed = true`: a certificate made on the server, trusted by no one; for
    /// development.
    SelfSigned,
    /// `cert = "..."`, `key = "..."`: PEM files on the server (relative paths are taken from
    /// the release directory), reloaded when they change.
    Files { cert: String, key: String },
}

impl TlsSpec {
    pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
}

/// How the ACME CA checks the names (`challenge = "http-01"`, the default, or `"tls-alpn-01"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcmeChallenge {
    /// Port 80: `/.well-known/acme-challenge/TOKEN`, answered by berth's HTTP listener.
    #[default]
    Http01,
    /// Port 443: a TLS handshake with ALPN `acme-tls/1`, answered by berth's TLS listener.
    TlsAlpn01,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuildSpec {
    /// Run with `/bin/sh -c` in the release directory.
    pub command: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    /// Run with `/bin/sh -c`; must bind `127.0.0.1:$PORT` if a route points at it.
    pub command: String,
    /// Number of processes, 1 to 64. Default 1.
    pub instances: u32,
    /// Readiness and liveness probe; `None` means "ready once started".
    pub health: Option<HealthSpec>,
    /// Time between SIGTERM and SIGKILL. Default 30s.
    pub stop_timeout: Duration,
    /// Memory limit per instance in bytes (`memory_max = "512M"`).
    pub memory_max: Option<u64>,
    /// CPU limit per instance, in CPUs (`cpu_max = "50%"` is 0.5, `"200%"` two cores).
    pub cpu_max: Option<f64>,
    /// Processes and threads per instance (`pids_max = 256`).
    pub pids_max: Option<u32>,
    /// How the instance is confined; every part on by default.
    pub sandbox: Sandbox,
    /// `image = "..."`: the container image of the service, for `berth export kubernetes`
    /// only (the daemon runs `command` in the release tree).
    pub image: Option<String>,
    /// `autoscale = { min, max, cpu }`: for `berth export kubernetes` only.
    pub autoscale: Option<Autoscale>,
}

/// The hardening of a service's processes (each key in `[services.NAME]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    /// `no_new_privs = false` lets setuid binaries raise the app's rights (default on).
    pub no_new_privs: bool,
    /// `private_tmp = false` shares the host's `/tmp` (default: the app's own `/tmp`).
    pub private_tmp: bool,
    /// `open_files = 65536`: `RLIMIT_NOFILE`.
    pub open_files: u32,
    /// `processes = 4096`: `RLIMIT_NPROC`, for every process and thread of the app's user.
    pub processes: u32,
    /// `core_dumps = true` allows core dumps (default off: secrets live in memory).
    pub core_dumps: bool,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            no_new_privs: true,
            private_tmp: true,
            open_files: 65_536,
            processes: 4_096,
            core_dumps: false,
        }
    }
}

/// `health = { path = "/health/ready", interval = "2s", timeout = "1s", healthy_after = 2 }`
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSpec {
    /// HTTP path probed with GET; starts with '/'.
    pub path: String,
    /// Time between probes. Default 2s.
    pub interval: Duration,
    /// Time one probe may take; at most `interval`. Default 1s.
    pub timeout: Duration,
    /// Consecutive passing probes before a new instance is ready. Default 1.
    pub healthy_after: u32,
    /// A new instance not ready within this time has failed to start. Default 60s.
    pub start_deadline: Duration,
    /// Consecutive failing probes before a running instance is restarted. Default 3.
    pub unhealthy_after: u32,
}

impl HealthSpec {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_START_DEADLINE: Duration = Duration::from_secs(60);
    pub const DEFAULT_HEALTHY_AFTER: u32 = 1;
    pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;
}

impl ServiceSpec {
    pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MAX_INSTANCES: u32 = 64;
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    /// `"shop.example.com"`, `"*.example.com"` (any subdomain), `"localhost"`, or `"*"` (any host).
    /// Lowercase, no port. Default `"*"`.
    pub host: String,
    /// Path prefix, starts with '/'. Default `"/"`.
    pub path: String,
    pub target: RouteTarget,
    /// Remove `path` from the request path before passing it on. Default false.
    pub strip_prefix: bool,
    /// Request body limit in bytes; `None` means `[proxy] max_body`.
    pub max_body: Option<u64>,
    /// `rate_limit = "api"`: a zone of `[proxy] rate_limits` the route's requests count
    /// against. None: no limit.
    pub rate_limit: Option<String>,
    /// `headers = "strict"`: this route's preset instead of `[proxy] headers`.
    pub headers: Option<HeaderPreset>,
    /// `set_headers = { NAME = "value" }`: applied after `[proxy] set_headers`; `None` (written
    /// `""` or `false`) removes the header.
    pub set_headers: BTreeMap<String, Option<String>>,
    /// `force_headers = true`: the route's headers replace (or remove) the ones the app sets
    /// itself. Default false: the app's own header wins.
    pub force_headers: bool,
    /// `cache_control = { hashed = "…", html = "…", other = "…" }`: the `Cache-Control` of a
    /// static route's files, by kind. Only on static routes.
    pub cache_control: CacheControlSpec,
    /// Where this route is written in berth.toml, for later diagnostics.
    pub span: SourceSpan,
}

/// The `Cache-Control` a static route sends, by kind of file; `None` sends none (written `""`
/// or `false`). A file is HTML (by its type, the SPA fallback included) before it is hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheControlSpec {
    /// Names with a content hash (`app.3f9a1c2b.js`, `index-BkT9x2aB.css`; the rule is the
    /// proxy's `is_hashed_name`). Default [`CacheControlSpec::IMMUTABLE`].
    pub hashed: Option<String>,
    /// HTML pages. Default [`CacheControlSpec::REVALIDATE`].
    pub html: Option<String>,
    /// Every other file. Default [`CacheControlSpec::REVALIDATE`].
    pub other: Option<String>,
}

impl CacheControlSpec {
    /// A year, and never revalidated: the bytes behind a hashed name never change.
    pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    /// Kept, but revalidated on every use (a 304 when unchanged): a deploy shows at once.
    pub const REVALIDATE: &str = "no-cache";
}

impl Default for CacheControlSpec {
    fn default() -> Self {
        CacheControlSpec {
            hashed: Some(Self::IMMUTABLE.to_owned()),
            html: Some(Self::REVALIDATE.to_owned()),
            other: Some(Self::REVALIDATE.to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteTarget {
    /// `service = "web"`: load-balanced across the service's instances.
    Service(String),
    /// `static = "build/client"`: files served by the proxy. `dir` is relative to the app
    /// directory, never absolute, never containing `..`. With `spa`, unknown paths get
    /// `index.html`.
    Static { dir: String, spa: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxySpec {
    /// Default request body limit in bytes. Default 10 MiB.
    pub max_body: u64,
    /// Time to connect to an instance. Default 5s.
    pub connect_timeout: Duration,
    /// Time for an instance to start its response. Default 60s.
    pub response_timeout: Duration,
    pub balance: Balance,
    /// `headers = "strict" | "basic" | "off"`: security headers on every response. Default
    /// `basic`.
    pub headers: HeaderPreset,
    /// `[proxy.set_headers]`: `NAME = "value"` sets (or replaces) a header of the preset;
    /// `NAME = ""` or `NAME = false` (`None` here) removes one. Names as written.
    pub set_headers: BTreeMap<String, Option<String>>,
    /// `rate_limits = { api = "50/s burst 100" }`: named zones routes refer to.
    pub rate_limits: BTreeMap<String, RateSpec>,
    /// `trusted_proxies = ["10.0.0.0/8", "127.0.0.1"]`: peers whose `X-Forwarded-For` names
    /// the client. A lone address is a `/32` (`/128`); host bits are always zero.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for ProxySpec {
    fn default() -> Self {
        ProxySpec {
            max_body: 10 << 20,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            balance: Balance::RoundRobin,
            headers: HeaderPreset::Basic,
            set_headers: BTreeMap::new(),
            rate_limits: BTreeMap::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// A set of security headers (see the proxy's `HeaderPolicy` for the exact values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderPreset {
    /// `"off"`: none.
    Off,
    /// `"basic"`: nosniff, X-Frame-Options SAMEORIGIN, Referrer-Policy, HSTS over HTTPS.
    #[default]
    Basic,
    /// `"strict"`: basic tightened, plus a same-origin CSP, Permissions-Policy and COOP.
    Strict,
}

/// How the proxy picks an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// `"round_robin"`
    #[default]
    RoundRobin,
    /// `"least_requests"`: the instance with the fewest requests in flight.
    LeastRequests,
}

/// Byte range of something in berth.toml. Always compares equal, so that moving a route within
/// the file never makes two specs differ.
#[derive(Debug, Clone, Default)]
pub struct SourceSpan(pub Range<usize>);

impl PartialEq for SourceSpan {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
