use export::kubernetes::{Options, files, one_document};

use crate::{run_ok, shop, write};

/// From PyPI: on PATH, or in the virtualenv scripts/test makes when the system's pip refuses.
fn kubernetes_validate() -> std::process::Command {
    std::process::Command::new(testkit::pip_tool(
        "kubernetes-validate",
        "kubernetes-validate",
    ))
}

fn options() -> Options {
    Options {
        static_image: Some("ghcr.io/acme/shop-static:1.4.2".to_owned()),
        ..Options::default()
    }
}

/// Every manifest validates against Kubernetes 1.30 (strict: no unknown field).
#[test]
fn manifests_validate_against_kubernetes_1_30() {
    let files = files(&shop(), &options()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = kubernetes_validate();
    cmd.args(["--kubernetes-version", "1.30.0", "--strict"]);
    for f in &files {
        cmd.arg(write(dir.path(), &f.path, &f.contents));
    }
    let out = run_ok(&mut cmd);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!said.contains("ERROR"), "{said}");
    let all = one_document(&files);
    let kinds: Vec<&str> = all
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(|k| k.trim_matches('"'))
        .collect();
    for kind in [
        "Deployment",
        "Service",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "Ingress",
        "ConfigMap",
        "CronJob",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    // Also as the one stream stdout gets.
    let path = write(dir.path(), "all.yaml", &all);
    run_ok(
        kubernetes_validate()
            .args(["--kubernetes-version", "1.30.0", "--strict"])
            .arg(path),
    );
}

#[test]
fn deployment_carries_the_service_spec() {
    let files = files(&shop(), &options()).unwrap();
    let web = contents(&files, "shop-web.yaml");
    for line in [
        "replicas: 2",
        "image: \"ghcr.io/acme/shop-web:1.4.2\"",
        "terminationGracePeriodSeconds: 30",
        "path: \"/health/ready\"",
        "successThreshold: 2",
        "memory: \"536870912\"",
        "cpu: \"500m\"",
        "averageUtilization: 70",
        "minReplicas: 2",
        "maxReplicas: 10",
        "name: \"PORT\"",
        "value: \"8080\"",
        "kubernetes.io/metadata.name: \"ingress-nginx\"",
        // [env] referencing a secret: expanded by the kubelet, not here.
        "value: \"$(DATABASE_URL)\"",
        // A literal `$(` is escaped.
        "value: \"hello $$(not a reference) from $(NODE_ENV)\"",
    ] {
        assert!(has_line(web, line), "missing {line}:\n{web}");
    }
    let ingress = contents(&files, "shop-ingress.yaml");
    for line in [
        "cert-manager.io/cluster-issuer: \"letsencrypt\"",
        "nginx.ingress.kubernetes.io/limit-rps: \"50\"",
        "nginx.ingress.kubernetes.io/limit-burst-multiplier: \"2\"",
        "host: \"shop.example.com\"",
        "secretName: \"shop-tls\"",
    ] {
        assert!(has_line(ingress, line), "missing {line}:\n{ingress}");
    }
    assert_eq!(
        ingress.matches("cert-manager.io/cluster-issuer").count(),
        1,
        "one certificate for the app:\n{ingress}"
    );
    // The worker has no route: no Service, no NetworkPolicy.
    let worker = contents(&files, "shop-worker.yaml");
    assert!(!worker.contains("kind: \"Service\""), "{worker}");
}

#[test]
fn a_service_without_image_is_named() {
    let source = crate::SHOP.replace("image = \"ghcr.io/acme/shop-worker:1.4.2\"\n", "");
    let app = spec::parse("berth.toml", &source).unwrap();
    let err = files(&app, &options()).unwrap_err();
    assert_eq!(
        err,
        export::Error::MissingImage {
            service: "worker".to_owned()
        }
    );
    assert!(err.to_string().contains("`worker`"), "{err}");
    assert!(err.hint().contains("[services.worker]"), "{}", err.hint());
}

#[test]
fn static_routes_need_an_image() {
    let err = files(&shop(), &Options::default()).unwrap_err();
    assert!(
        matches!(&err, export::Error::StaticNeedsImage { route, dir } if route == "shop.example.com/" && dir == "build/client"),
        "{err:?}"
    );
    assert!(err.hint().contains("--static-image"));
}

fn contents<'a>(files: &'a [export::File], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path}"))
        .contents
}

/// A line of the YAML, as written after its indentation and list dash.
fn has_line(yaml: &str, line: &str) -> bool {
    yaml.lines()
        .any(|l| l.trim().trim_start_matches("- ") == line)
}

#[test]
fn what_is_left_out_is_said() {
    let source = format!(
        "{}\n[databases.cache]\nengine = \"sqlite\"\npath = \"data/app.db\"\n\n[backups.cache]\ndatabase = \"cache\"\n",
        crate::SHOP
    );
    let app = spec::parse("berth.toml", &source).unwrap();
    let notes = export::kubernetes::notes(&app);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("[backups.cache] has no CronJob"),
        "{notes:?}"
    );
    assert!(export::kubernetes::notes(&shop()).is_empty());
}
