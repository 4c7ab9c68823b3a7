use export::firewall::{Options, nftables, ufw};

use crate::{run_ok, tool, write};

#[test]
fn nftables_ruleset_passes_nft_check() {
    let o = Options {
        ssh_port: 2222,
        ..Options::default()
    };
    let text = nftables(&o);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "berth.nft", &text);
    // `nft -c` parses and evaluates against the kernel without committing; a network namespace
    // of its own keeps the check off the host's ruleset either way.
    tool("nft", "nftables");
    run_ok(
        tool("unshare", "util-linux")
            .args(["-n", "nft", "-c", "-f"])
            .arg(&path),
    );
    for rule in [
        "policy drop;",
        "iif \"lo\" accept",
        "ct state established,related accept",
        "tcp dport 2222 accept",
        "tcp dport 80 accept",
        "tcp dport 443 accept",
        "tcp dport 9100 drop",
    ] {
        assert!(text.contains(rule), "missing {rule}:\n{text}");
    }
    assert!(!text.contains("tcp dport 22 "), "ssh port is configurable");
    assert!(!text.contains("udp dport 443"), "no HTTP/3 yet");
}

#[test]
fn nftables_opens_udp_443_only_with_http3() {
    let text = nftables(&Options {
        http3: true,
        ..Options::default()
    });
    assert!(text.contains("udp dport 443 accept"));
}

/// The ufw script parses as shell, and every `ufw` line in it is accepted by `ufw --dry-run`
/// (which changes nothing).
#[test]
fn ufw_script_is_accepted_by_ufw_dry_run() {
    let text = ufw(&Options::default());
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "berth-ufw.sh", &text);
    run_ok(tool("bash", "bash").arg("-n").arg(&path));
    let commands: Vec<&str> = text.lines().filter(|l| l.starts_with("ufw ")).collect();
    for expected in [
        "ufw default deny incoming",
        "ufw allow 22/tcp comment 'ssh'",
        "ufw allow 80/tcp comment 'berth http'",
        "ufw allow 443/tcp comment 'berth https'",
        "ufw deny 9100/tcp comment 'berth admin'",
    ] {
        assert!(commands.contains(&expected), "missing {expected}:\n{text}");
    }
    tool("ufw", "ufw");
    for line in commands {
        let args = line.strip_prefix("ufw ").unwrap();
        run_ok(
            tool("bash", "bash")
                .arg("-c")
                .arg(format!("ufw --dry-run {args}")),
        );
    }
}
