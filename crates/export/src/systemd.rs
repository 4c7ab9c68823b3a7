//! `berth export systemd`: the unit that runs the daemon as a hardened system service.
//!
//! Two shapes, and the choice is the operator's:
//!
//! - **root, bounded** (the default, and what `berth install` writes): the daemon keeps app
//!   isolation — each app runs as a user of its own, which takes switching users, creating
//!   them and handing files over — but holds only the capabilities those need
//!   ([`ROOT_CAPABILITIES`]), none of `CAP_SYS_ADMIN`, `CAP_SYS_PTRACE`, `CAP_NET_ADMIN`, …;
//! - **a dedicated user** (`--user berth`): no capability but `CAP_NET_BIND_SERVICE` (ports 80
//!   and 443), so the daemon cannot switch users: every app runs as that user and could read
//!   berth's keys. For a server that runs one trusted app.
//!
//! Both are sandboxed alike; every setting relaxed or left out says which feature needs it, in
//! the unit itself. `systemd-analyze security` rates the root shape 2.9 and the user shape 2.0
//! (the tests check both stay at 3.0 or below).

/// What the unit runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `None`: root, bounded to [`ROOT_CAPABILITIES`]. `Some(name)`: that user (and group),
    /// made by `berth install`.
    pub user: Option<String>,
    /// The berth binary `ExecStart` runs.
    pub binary: String,
    /// `--http` of `berth serve`.
    pub http: String,
    /// `--https` of `berth serve`, if any.
    pub https: Option<String>,
    /// `--admin` of `berth serve` (`/metrics`, the dashboard), if any; keep it on loopback.
    pub admin: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            user: None,
            binary: "/usr/local/bin/berth".to_owned(),
            http: "0.0.0.0:80".to_owned(),
            https: Some("0.0.0.0:443".to_owned()),
            admin: Some("127.0.0.1:9100".to_owned()),
        }
    }
}

/// The state directory: `StateDirectory=berth`.
pub const STATE: &str = "/var/lib/berth";

/// The capabilities the root daemon keeps, each with the feature that needs it.
pub const ROOT_CAPABILITIES: [(&str, &str); 7] = [
    ("CAP_NET_BIND_SERVICE", "the proxy on ports 80 and 443"),
    (
        "CAP_SETUID",
        "running each app and its build as its own user",
    ),
    (
        "CAP_SETGID",
        "the same, with the app's group (and no other groups)",
    ),
    (
        "CAP_CHOWN",
        "handing an app its shared/, home/ and tmp/ directories, and release trees to root:APP",
    ),
    (
        "CAP_FOWNER",
        "setting modes on files the apps own (sealing a release, restores)",
    ),
    (
        "CAP_DAC_OVERRIDE",
        "backing up and restoring data in apps' 0700 directories (SQLite, dirs)",
    ),
    (
        "CAP_KILL",
        "stopping apps' process groups, which run as other users",
    ),
];

/// `berth.service` and one `berth-NAME.socket` per listener, for the unit to be written beside.
pub fn units(o: &Options) -> Vec<crate::File> {
    let mut files = vec![crate::File::new("berth.service", unit(o))];
    files.extend(
        listeners(o).map(|(name, addr)| crate::File::new(socket_name(name), socket(name, addr))),
    );
    files
}

/// The listeners of `berth serve`, by the names `LISTEN_FDNAMES` gives them.
fn listeners(o: &Options) -> impl Iterator<Item = (&'static str, &str)> {
    [
        Some(("http", o.http.as_str())),
        o.https.as_deref().map(|a| ("https", a)),
        o.admin.as_deref().map(|a| ("admin", a)),
    ]
    .into_iter()
    .flatten()
}

fn socket_name(listener: &str) -> String {
    format!("berth-{listener}.socket")
}

/// One listening socket that systemd holds for the daemon, named as `berth serve` expects
/// (`FileDescriptorName=`), so it survives a restart of the service (no `PartOf=`: a stop of
/// the service leaves it listening, and the next connection starts berth again).
pub fn socket(listener: &str, addr: &str) -> String {
    format!(
        "# berth's {listener} listener, held by systemd across restarts of berth.service (made by\n\
         # `berth export systemd`). berth serve takes it by its name from LISTEN_FDNAMES.\n\
         [Unit]\nDescription=berth: the {listener} listener\n\n\
         [Socket]\nListenStream={addr}\nFileDescriptorName={listener}\nService=berth.service\n\
         # Clients wait here while no daemon accepts (a restart), instead of being refused.\n\
         Backlog=4096\nNoDelay=yes\nReusePort=no\n\n\
         [Install]\nWantedBy=sockets.target\n"
    )
}

/// The unit file `berth.service`.
pub fn unit(o: &Options) -> String {
    let mut serve = format!("{} serve --state {STATE} --http {}", o.binary, o.http);
    if let Some(https) = &o.https {
        serve.push_str(&format!(" --https {https}"));
    }
    if let Some(admin) = &o.admin {
        serve.push_str(&format!(" --admin {admin}"));
    }
    let mut u = String::new();
    u.push_str(
        "# berth: the daemon as a hardened system service (made by `berth export systemd`).\n",
    );
    u.push_str(
        "# Apps are berth's children: they inherit this sandbox, so every setting below still\n",
    );
    u.push_str("# lets node, python and compiled binaries run.\n\n");
    u.push_str("[Unit]\nDescription=berth: deploys and serves web apps\n");
    u.push_str("After=network-online.target\nWants=network-online.target\n\n");
    u.push_str("[Service]\n");
    let sockets: Vec<String> = listeners(o).map(|(name, _)| socket_name(name)).collect();
    u.push_str(
        "# The listening sockets are systemd's (berth-*.socket), handed over at every start: a\n",
    );
    u.push_str(
        "# `systemctl restart berth` refuses no connection, they wait in the sockets' queues.\n",
    );
    u.push_str(&format!("Sockets={}\n", sockets.join(" ")));
    u.push_str(
        "# READY=1 once the listeners are bound and every app is recovered; WATCHDOG=1 pings.\n",
    );
    u.push_str("Type=notify\nNotifyAccess=main\nWatchdogSec=30s\n");
    u.push_str(&format!("ExecStart={serve}\n"));
    u.push_str("# A new binary takes over, apps untouched, no request lost; the old daemon tells systemd\n");
    u.push_str("# the new main PID (MAINPID=) before it exits.\n");
    u.push_str(&format!(
        "ExecReload={} upgrade --state {STATE}\n",
        o.binary
    ));
    u.push_str("Restart=on-failure\nRestartSec=2s\n");
    u.push_str(
        "# SIGTERM to the daemon only: it stops the apps gracefully (their stop_timeout), then\n",
    );
    u.push_str("# systemd kills whatever is left.\nKillMode=mixed\nTimeoutStopSec=120s\n");
    u.push_str("# Apps' open_files (default 65536) is clamped to the daemon's hard limit.\nLimitNOFILE=65536:524288\n");
    u.push_str("StateDirectory=berth\n");
    u.push_str("# 0711: apps traverse it to reach their own directory, and cannot list it.\nStateDirectoryMode=0711\n");
    u.push_str("UMask=0077\n\n");
    match &o.user {
        None => root_identity(&mut u),
        Some(user) => user_identity(&mut u, user),
    }
    u.push_str(SANDBOX);
    u.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    u
}

fn root_identity(u: &mut String) {
    u.push_str(
        "# Runs as root (no User=): app isolation needs it — every app, and its build, runs as a\n",
    );
    u.push_str(
        "# user of its own (berth-APP, made with useradd on its first deploy) that cannot read\n",
    );
    u.push_str("# berth's keys or another app's files. Root here holds only these capabilities:\n");
    for (cap, why) in ROOT_CAPABILITIES {
        u.push_str(&format!("#   {cap}: {why}\n"));
    }
    let caps: Vec<&str> = ROOT_CAPABILITIES.iter().map(|(c, _)| *c).collect();
    u.push_str(&format!("CapabilityBoundingSet={}\n", caps.join(" ")));
    u.push_str("# Not CAP_SYS_ADMIN: apps get no mount namespace of their own, so each has its own TMPDIR\n");
    u.push_str("# and all share this service's private /tmp (private_tmp falls back; berth status says so).\n");
    u.push_str("# useradd writes /etc/passwd, /etc/group, /etc/shadow and /etc/gshadow (and their locks).\n");
    u.push_str("ReadWritePaths=/etc\n");
}

fn user_identity(u: &mut String, user: &str) {
    u.push_str(&format!(
        "# Runs as the dedicated user {user}, with no capability but binding ports 80 and 443.\n"
    ));
    u.push_str("# App isolation is OFF: berth cannot switch users, so every app runs as this user and can\n");
    u.push_str("# read berth's keys and state (berth status says so). For a server with one trusted app;\n");
    u.push_str("# leave --user out for a unit that keeps apps apart.\n");
    u.push_str(&format!("User={user}\nGroup={user}\n"));
    u.push_str(
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n",
    );
}

/// The sandbox both shapes share.
const SANDBOX: &str = "\
# Apps keep setuid binaries from raising their rights (so `no_new_privs = false` on a service
# has no effect under this unit).
NoNewPrivileges=yes
# The OS is read-only; the state directory is writable. Local backup targets (`to =
# \"/srv/backups\"`) need a ReadWritePaths= line of their own (`systemctl edit berth`).
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
LockPersonality=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
SystemCallArchitectures=native
# Apps too: nice(), setpriority() and sched_setaffinity() answer EPERM (~@resources).
SystemCallFilter=@system-service
SystemCallFilter=~@clock @cpu-emulation @debug @module @mount @obsolete @raw-io @reboot @resources @swap
SystemCallErrorNumber=EPERM
# AF_UNIX: the control socket; AF_INET/AF_INET6: the proxy, ACME, S3, notifications, and the
# apps' own connections; AF_NETLINK: apps that list network interfaces (Node's
# os.networkInterfaces(), getifaddrs).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
# Relaxed, and why:
# - Delegate=yes: berth is a service manager of its own (memory_max, cpu_max, pids_max per
#   instance as cgroups), so systemd hands it a cgroup subtree rather than berth falling back
#   to RLIMIT_AS; and ProtectControlGroups is left off, because berth writes those cgroups.
Delegate=yes
# - MemoryDenyWriteExecute left off: JIT compilers in apps (Node's V8, PyPy, the JVM).
# - ProtectProc and ProcSubset left off: the sampler reads every app process in /proc (they
#   run as other users), /proc/stat (boot time) and /proc/sys/net/ipv4/ip_local_port_range
#   (instance ports); apps read /proc/meminfo and /proc/cpuinfo.
# - PrivateUsers left off: apps run as real users of the host, and binding 80 and 443 needs
#   the capability in the host's user namespace.
# - PrivateNetwork and IPAddressDeny left off: the proxy serves the internet, and apps reach
#   their databases and APIs.
# - RootDirectory left out: apps run the host's toolchains (python3,
#   node) from their release trees.
";
