use export::systemd::{Options, unit, units};

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
    // The service with its sockets, verified together (the service names them in Sockets=).
    let files = units(&o);
    let paths: Vec<_> = files
        .iter()
        .map(|f| write(dir.path(), &f.path, &f.contents))
        .collect();
    let path = paths[0].clone();
    let verify = run_ok(
        tool("systemd-analyze", "systemd")
            .args(["verify"])
            .args(&paths),
    );
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        !stderr.contains("berth"),
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

/// The listeners are systemd's sockets, named as `berth serve` takes them from LISTEN_FDNAMES,
/// so a restart of the service refuses no connection.
#[test]
fn the_listeners_are_sockets_systemd_holds_across_restarts() {
    let files = units(&Options::default());
    let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "berth.service",
            "berth-http.socket",
            "berth-https.socket",
            "berth-admin.socket"
        ]
    );
    assert!(
        files[0]
            .contents
            .lines()
            .any(|l| l == "Sockets=berth-http.socket berth-https.socket berth-admin.socket")
    );
    for (file, name, addr) in [
        (&files[1], "http", "0.0.0.0:80"),
        (&files[2], "https", "0.0.0.0:443"),
        (&files[3], "admin", "127.0.0.1:9100"),
    ] {
        for line in [
            format!("ListenStream={addr}"),
            format!("FileDescriptorName={name}"),
            "Service=berth.service".to_owned(),
        ] {
            assert!(
                file.contents.lines().any(|l| l == line),
                "{line}:\n{}",
                file.contents
            );
        }
    }
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
