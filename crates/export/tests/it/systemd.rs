use export::systemd::{Options, unit};

use crate::{run_ok, tool, write};

/// `systemd-analyze verify` accepts the unit and `systemd-analyze security` rates it 3.0 or
/// lower (printed), in both shapes.
fn check(o: &Options) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    // ExecStart must name a real executable for verify; the test binary itself will do.
    let o = Options {
        binary: std::env::current_exe().unwrap().display().to_string(),
        ..o.clone()
    };
    let text = unit(&o);
    let path = write(dir.path(), "berth.service", &text);
    let verify = run_ok(
        tool("systemd-analyze", "systemd")
            .args(["verify"])
            .arg(&path),
    );
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !stderr.contains("berth.service"),
        "systemd-analyze verify complains:\n{stderr}\n{text}"
    );
    let out = run_ok(
        tool("systemd-analyze", "systemd")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&path),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("exposure level for berth.service:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no score in:\n{report}"));
    println!("systemd-analyze security ({:?}): {score}", o.user);
    assert!(score <= 3.0, "exposure {score} > 3.0:\n{report}\n{text}");
    score
}

#[test]
fn root_unit_verifies_and_scores_three_or_lower() {
    let score = check(&Options::default());
    let text = unit(&Options::default());
    for line in [
        "Type=notify",
        "StateDirectory=berth",
        "Delegate=yes",
        "ExecStart=/usr/local/bin/berth serve --state /var/lib/berth --http 0.0.0.0:80 --https 0.0.0.0:443 --admin 127.0.0.1:9100",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE CAP_KILL",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    assert!(!text.contains("MemoryDenyWriteExecute=yes"));
    assert!(!text.contains("\nUser="), "the default unit runs as root");
    assert!(score <= 3.0);
}

#[test]
fn dedicated_user_unit_verifies_and_scores_three_or_lower() {
    let o = Options {
        user: Some("berth".to_owned()),
        https: None,
        admin: None,
        ..Options::default()
    };
    check(&o);
    let text = unit(&o);
    for line in [
        "User=berth",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecStart=/usr/local/bin/berth serve --state /var/lib/berth --http 0.0.0.0:80",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    assert!(text.contains("App isolation is OFF"));
}

/// Every setting the analyzer counts against the unit is relaxed on purpose, and the unit
/// says why next to it.
#[test]
fn every_relaxed_setting_is_explained() {
    let text = unit(&Options::default());
    for setting in [
        "MemoryDenyWriteExecute",
        "ProtectProc",
        "ProcSubset",
        "PrivateUsers",
        "PrivateNetwork",
        "IPAddressDeny",
        "ProtectControlGroups",
        "RootDirectory",
        "CAP_SYS_ADMIN",
        "AF_NETLINK",
        "useradd",
    ] {
        let explained = text
            .lines()
            .any(|l| l.starts_with('#') && l.contains(setting));
        assert!(explained, "no comment explains {setting}:\n{text}");
    }
}
