//! `berth export` and `berth install` as an operator runs them: stdout or `--out DIR`, no
//! overwrite without `--force`, bad input named with exit 2, the install plan and its refusal
//! where systemd is not PID 1.

use crate::harness::*;

const SHOP: &str = "[app]\nname = \"shop\"\n\n[secrets]\nAPI_TOKEN = { required = true }\n\n[services.web]\ncommand = \"python3 -u web.py\"\nimage = \"ghcr.io/acme/shop:1\"\nhealth = { path = \"/health\" }\n\n[services.worker]\ncommand = \"python3 worker.py\"\n\n[[routes]]\npath = \"/\"\nservice = \"web\"\n";

#[test]
fn kubernetes_names_the_service_without_image_and_exits_2() {
    let app = app(&[("berth.toml", SHOP)]);
    let state = tempfile::tempdir().unwrap();
    let run = berth(
        state.path(),
        &["export", "kubernetes", app.path().to_str().unwrap()],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("service `worker` has no `image`"),
        "{run:?}"
    );
    assert!(run.stderr.contains("berth.toml"), "{run:?}");
    assert!(
        run.stderr.contains("hint: add image = ") && run.stderr.contains("[services.worker]"),
        "{run:?}"
    );
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn a_bad_berth_toml_is_reported_with_its_place() {
    let app = app(&[(
        "berth.toml",
        "[app]\nname = \"shop\"\n\n[services.web]\ncommand = \"x\"\nautoscale = { min = 3, max = 1 }\n",
    )]);
    let state = tempfile::tempdir().unwrap();
    let run = berth(
        state.path(),
        &["export", "grafana", app.path().to_str().unwrap()],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("berth.toml:6:"), "{run:?}");
    assert!(run.stderr.contains("`max` is below `min`"), "{run:?}");
}

#[test]
fn out_writes_files_and_refuses_to_overwrite_without_force() {
    let with_image = SHOP.replace(
        "python3 worker.py\"\n",
        "python3 worker.py\"\nimage = \"ghcr.io/acme/shop:1\"\n",
    );
    let app = app(&[("berth.toml", &with_image)]);
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = app.path().to_str().unwrap();
    let to = out.path().join("k8s");
    let to = to.to_str().unwrap();
    let run = berth(state.path(), &["export", "kubernetes", dir, "--out", to]);
    assert_eq!(run.code, 0, "{run:?}");
    let web = std::fs::read_to_string(out.path().join("k8s/shop-web.yaml")).unwrap();
    assert!(web.contains("kind: \"Deployment\""), "{web}");
    assert!(web.contains("secretKeyRef"), "{web}");
    std::fs::write(out.path().join("k8s/shop-web.yaml"), "mine").unwrap();
    let again = berth(state.path(), &["export", "kubernetes", dir, "--out", to]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(
        again.stderr.contains("already there; nothing was written"),
        "{again:?}"
    );
    assert!(again.stderr.contains("--force"), "{again:?}");
    let kept = std::fs::read_to_string(out.path().join("k8s/shop-web.yaml")).unwrap();
    assert_eq!(kept, "mine");
    let forced = berth(
        state.path(),
        &["export", "kubernetes", dir, "--out", to, "--force"],
    );
    assert_eq!(forced.code, 0, "{forced:?}");
    // Without --out: one stream of YAML documents on stdout.
    let stdout = berth(state.path(), &["export", "kubernetes", dir]);
    assert_eq!(stdout.code, 0, "{stdout:?}");
    assert!(stdout.stdout.contains("\n---\n"), "{stdout:?}");
}

#[test]
fn systemd_firewall_prometheus_print_to_stdout() {
    let app = app(&[("berth.toml", SHOP)]);
    let state = tempfile::tempdir().unwrap();
    let dir = app.path().to_str().unwrap();
    let unit = berth(
        state.path(),
        &["export", "systemd", "--http", "0.0.0.0:8080"],
    );
    assert_eq!(unit.code, 0, "{unit:?}");
    assert!(unit.stdout.contains("--http 0.0.0.0:8080"), "{unit:?}");
    assert!(unit.stdout.contains("Type=notify"), "{unit:?}");
    let ufw = berth(
        state.path(),
        &["export", "firewall", "--ufw", "--ssh-port", "2222"],
    );
    assert_eq!(ufw.code, 0, "{ufw:?}");
    assert!(ufw.stdout.contains("ufw allow 2222/tcp"), "{ufw:?}");
    let prom = berth(state.path(), &["export", "prometheus", dir]);
    assert_eq!(prom.code, 0, "{prom:?}");
    assert!(prom.stdout.contains("# ==> prometheus.yml <=="), "{prom:?}");
    assert!(prom.stdout.contains("BerthErrorRate"), "{prom:?}");
    let bad = berth(
        state.path(),
        &["export", "systemd", "--http", "not-an-address"],
    );
    assert_eq!(bad.code, 2, "{bad:?}");
}

/// This test host's PID 1 is not systemd (a container): install refuses and says why, and
/// changes nothing; `--dry-run` prints the plan and the unit.
#[test]
fn install_plans_and_refuses_without_systemd() {
    let state = tempfile::tempdir().unwrap();
    let systemd = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    let booted =
        systemd.trim() == "systemd" && std::path::Path::new("/run/systemd/system").is_dir();
    let plan = berth(state.path(), &["install", "--dry-run", "--user", "berth"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    for line in [
        "berth install would, in order:",
        "create the state directory /var/lib/berth (0711, owned by berth)",
        "write /etc/systemd/system/berth.service",
        "systemctl daemon-reload",
        "systemctl enable --now berth.service",
        "User=berth",
        "app isolation is OFF",
    ] {
        assert!(plan.stdout.contains(line), "missing {line:?}: {plan:?}");
    }
    let root = berth(state.path(), &["install", "--dry-run"]);
    assert!(root.stdout.contains("owned by root"), "{root:?}");
    assert!(
        root.stdout
            .contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID"),
        "{root:?}"
    );
    if booted {
        return; // The refusal is for hosts without systemd.
    }
    assert!(
        plan.stdout
            .contains("but here it would refuse: systemd is not PID 1"),
        "{plan:?}"
    );
    let run = berth(state.path(), &["install"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("cannot install berth as a service: systemd is not PID 1"),
        "{run:?}"
    );
    assert!(run.stderr.contains("hint:"), "{run:?}");
    assert!(
        !std::path::Path::new("/etc/systemd/system/berth.service").exists(),
        "nothing is written"
    );
}
