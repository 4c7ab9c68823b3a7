//! `berth install [--user NAME] [--http ADDR] [--https ADDR] [--admin ADDR] [--dry-run]`: run
//! berth as a hardened systemd service on this host — the user (with `--user`) and the state
//! directory, the units from `export::systemd` (the service and its sockets), `systemctl
//! daemon-reload`, `enable --now`. Each
//! step is printed as it runs; `--dry-run` prints them (and the unit) and changes nothing.
//! Refused where systemd is not PID 1, or without root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use export::systemd::STATE;
use supervisor::command::Command;

use crate::{EXIT_FAILED, output};

#[derive(Args)]
pub struct InstallArgs {
    /// Run the daemon as this dedicated user (made if missing), with no capability but binding
    /// ports 80 and 443; app isolation is then OFF. Default: root, bounded to the capabilities
    /// app isolation needs.
    #[arg(long)]
    user: Option<String>,
    #[command(flatten)]
    server: super::export::Server,
    /// The berth binary the service runs (default: this one). Not under /home, /root or /tmp,
    /// which the service cannot see.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Print the plan and the unit; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Whether systemd runs this host, as `sd_booted()` decides, and what PID 1 is.
fn systemd_is_pid1() -> Result<(), String> {
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let comm = comm.trim();
    if Path::new("/run/systemd/system").is_dir() && comm == "systemd" {
        Ok(())
    } else {
        Err(format!(
            "systemd is not PID 1 on this host (PID 1 is `{comm}`; /run/systemd/system {}), so there is no systemd to run berth as a service",
            if Path::new("/run/systemd/system").is_dir() {
                "exists"
            } else {
                "is missing"
            }
        ))
    }
}

/// The binary the unit runs: one the sandbox can see (ProtectHome, PrivateTmp).
fn binary(args: &InstallArgs) -> Result<PathBuf> {
    let path = match &args.binary {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("find this berth binary")?,
    };
    let path = path
        .canonicalize()
        .with_context(|| format!("find {}", path.display()))?;
    if ["/home", "/root", "/tmp", "/run/user"]
        .iter()
        .any(|dir| path.starts_with(dir))
    {
        bail!(super::BadInput(format!(
            "{} is where the service cannot see it (the unit has ProtectHome=yes and PrivateTmp=yes): copy it first, e.g. `install -m 0755 {} /usr/local/bin/berth`, then run /usr/local/bin/berth install",
            path.display(),
            path.display()
        )));
    }
    Ok(path)
}

/// One step of the plan.
enum Step {
    CreateUser(String),
    StateDir {
        owner: Option<String>,
    },
    /// A unit file under [`UNIT_DIR`]: its name and text.
    WriteUnit(String, String),
    Systemctl(&'static [&'static str]),
    /// `systemctl enable --now` these units.
    EnableAll(Vec<String>),
}

/// Where the units are written.
const UNIT_DIR: &str = "/etc/systemd/system";

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::CreateUser(user) => format!(
                "create the system user {user} (useradd --system --user-group --home-dir {STATE} --shell /usr/sbin/nologin {user})"
            ),
            Step::StateDir { owner } => format!(
                "create the state directory {STATE} (0711, owned by {})",
                owner.as_deref().unwrap_or("root")
            ),
            Step::WriteUnit(name, _) => format!("write {UNIT_DIR}/{name}"),
            Step::Systemctl(args) => format!("systemctl {}", args.join(" ")),
            Step::EnableAll(units) => format!("systemctl enable --now {}", units.join(" ")),
        }
    }
}

pub async fn run(args: InstallArgs) -> Result<u8> {
    let binary = binary(&args)?;
    let options = args
        .server
        .systemd(args.user.clone(), binary.display().to_string());
    if let Some(user) = &args.user
        && (user == "root" || user.is_empty())
    {
        bail!(super::BadInput(format!(
            "--user {user}: name a dedicated user, or leave --user out to run as root bounded to what app isolation needs"
        )));
    }
    let units = export::systemd::units(&options);
    let mut plan = Vec::new();
    if let Some(user) = &args.user
        && nix::unistd::User::from_name(user).ok().flatten().is_none()
    {
        plan.push(Step::CreateUser(user.clone()));
    }
    plan.push(Step::StateDir {
        owner: args.user.clone(),
    });
    for unit in &units {
        plan.push(Step::WriteUnit(unit.path.clone(), unit.contents.clone()));
    }
    plan.push(Step::Systemctl(&["daemon-reload"]));
    // The sockets with the service: they hold the listeners across its restarts.
    plan.push(Step::EnableAll(
        units.iter().map(|u| u.path.clone()).collect(),
    ));

    let host = systemd_is_pid1();
    if args.dry_run {
        output::line("berth install would, in order:");
        for (i, step) in plan.iter().enumerate() {
            output::line(format!("  {}. {}", i + 1, step.describe()));
        }
        if let Err(why) = &host {
            output::line(format!("but here it would refuse: {why}"));
        }
        if args.user.is_some() {
            output::line("note: with --user, app isolation is OFF: every app runs as that user");
        }
        for unit in &units {
            output::line(format!("\n# {UNIT_DIR}/{}", unit.path));
            output::line(unit.contents.trim_end());
        }
        return Ok(0);
    }
    if let Err(why) = host {
        output::error(&anyhow::anyhow!("cannot install berth as a service: {why}"));
        output::hint(format!(
            "run `berth serve --state {STATE} --http {} ...` under the host's own service manager, or `berth export systemd` to see the unit",
            args.server.http
        ));
        return Ok(EXIT_FAILED);
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(super::BadInput(
            "berth install creates users and writes /etc/systemd/system: run it as root (sudo berth install ...)".to_owned()
        ));
    }
    for (i, step) in plan.iter().enumerate() {
        output::line(format!("{}. {}", i + 1, step.describe()));
        apply(step).await.with_context(|| step.describe())?;
    }
    output::line("berth runs as berth.service: `systemctl status berth`, `journalctl -u berth -f`");
    Ok(0)
}

async fn apply(step: &Step) -> Result<()> {
    match step {
        Step::CreateUser(user) => {
            let args = [
                "--system",
                "--user-group",
                "--home-dir",
                STATE,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user.as_str(),
            ];
            tool("useradd", &args).await
        }
        Step::StateDir { owner } => {
            std::fs::create_dir_all(STATE)?;
            std::fs::set_permissions(STATE, std::fs::Permissions::from_mode(0o711))?;
            if let Some(user) = owner {
                let u = nix::unistd::User::from_name(user)?
                    .with_context(|| format!("no user {user}"))?;
                nix::unistd::chown(STATE, Some(u.uid), Some(u.gid))?;
            }
            Ok(())
        }
        Step::WriteUnit(name, text) => {
            let path = Path::new(UNIT_DIR).join(name);
            std::fs::write(&path, text)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            Ok(())
        }
        Step::Systemctl(args) => tool("systemctl", args).await,
        Step::EnableAll(units) => {
            let mut args = vec!["enable", "--now"];
            args.extend(units.iter().map(String::as_str));
            tool("systemctl", &args).await
        }
    }
}

/// Runs a system tool; its stderr is the error when it fails.
async fn tool(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
