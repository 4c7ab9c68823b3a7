//! Data-driven tests: every `tests/fixtures/NAME.toml` is parsed and its outcome compared with
//! `NAME.expected`: the rendered diagnostics, or for `ok_*` fixtures the parsed model. A first
//! line `# env: NAME` parses the fixture with that environment selected (`--env NAME`).
//! Run with `UPDATE_EXPECT=1` to rewrite the expected files, then review the diff by eye: they
//! are what users see.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spec::{
    AlertName, AlertsSpec, AppSpec, BackupSource, BackupSpec, BackupTarget, Balance,
    DatabaseEngine, DatabaseSpec, HeaderPreset, HealthSpec, IpNet, Keep, NotifyChannel,
    NotifyEvent, NotifySpec, RateSpec, RouteTarget, VerifyCadence,
};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> AppSpec {
    let file = format!("{name}.toml");
    let source = std::fs::read_to_string(fixtures_dir().join(&file)).unwrap();
    spec::parse(&file, &source).unwrap_or_else(|d| panic!("{d}"))
}

/// The environment a fixture selects with a first line `# env: NAME`, as `--env NAME` would.
fn selected_env(source: &str) -> Option<&str> {
    source
        .lines()
        .next()?
        .strip_prefix("# env: ")
        .map(str::trim)
}

/// What a fixture should produce: `ok_*` fixtures parse, all others fail.
fn outcome(file: &str, source: &str) -> Result<String, String> {
    let should_parse = file.starts_with("ok_");
    match spec::parse_env(file, source, selected_env(source)) {
        Ok(spec) if should_parse => Ok(format!("{spec:#?}\n")),
        Err(diags) if !should_parse => Ok(format!("{diags}\n")),
        Ok(_) => Err(format!("{file} parsed, but only ok_* fixtures should")),
        Err(diags) => Err(format!("{file} should parse:\n{diags}")),
    }
}

#[test]
fn fixtures() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() > 10, "fixtures not found");

    let mut failures = Vec::new();
    for path in &paths {
        let file = path.file_name().unwrap().to_str().unwrap();
        let source = std::fs::read_to_string(path).unwrap();
        let actual = match outcome(file, &source) {
            Ok(actual) => actual,
            Err(why) => {
                failures.push(why);
                continue;
            }
        };
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{file}: output differs from {}\n--- expected\n{expected}\n--- actual\n{actual}",
                expected_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\n(run with UPDATE_EXPECT=1 to accept the actual output)",
        failures.join("\n\n")
    );
}

#[test]
fn hello_example() {
    let app = fixture("ok_hello");
    assert_eq!(app.name, "hello");
    assert_eq!(
        app.build.unwrap().command,
        "cargo build --release --offline --quiet"
    );
    assert_eq!(
        app.env,
        BTreeMap::from([("GREETING".to_owned(), "hello from berth".to_owned())])
    );
    let web = &app.services["web"];
    assert_eq!(web.command, "target/release/hello");
    assert_eq!(web.instances, 2);
    assert_eq!(web.stop_timeout, Duration::from_secs(10));
    assert_eq!(web.memory_max, Some(64 << 20));
    assert_eq!(
        web.health,
        Some(HealthSpec {
            path: "/health/ready".to_owned(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_after: 2,
            start_deadline: Duration::from_secs(60),
            unhealthy_after: 3,
        })
    );
    assert_eq!(app.routes.len(), 1);
    let route = &app.routes[0];
    assert_eq!((route.host.as_str(), route.path.as_str()), ("*", "/"));
    assert_eq!(route.target, RouteTarget::Service("web".to_owned()));
    assert!(!route.strip_prefix);
    assert_eq!(route.max_body, None);
    assert_eq!(app.proxy, spec::ProxySpec::default());
}

#[test]
fn full_example() {
    let app = fixture("ok_full");
    assert_eq!(app.name, "shop");
    assert_eq!(app.env.len(), 2);
    assert_eq!(app.services.keys().collect::<Vec<_>>(), ["web", "worker"]);
    let worker = &app.services["worker"];
    assert_eq!(worker.instances, 1);
    assert_eq!(worker.health, None);
    assert_eq!(worker.stop_timeout, Duration::from_secs(30));
    assert_eq!(worker.memory_max, None);
    let health = app.services["web"].health.clone().unwrap();
    assert_eq!(health.unhealthy_after, 5);
    assert_eq!(health.start_deadline, Duration::from_secs(120));

    let routes: Vec<_> = app
        .routes
        .iter()
        .map(|r| {
            (
                r.host.as_str(),
                r.path.as_str(),
                &r.target,
                r.strip_prefix,
                r.max_body,
            )
        })
        .collect();
    let web = RouteTarget::Service("web".to_owned());
    let client = RouteTarget::Static {
        dir: "build/client".to_owned(),
        spa: true,
    };
    let assets = RouteTarget::Static {
        dir: "./assets".to_owned(),
        spa: false,
    };
    assert_eq!(
        routes,
        [
            ("shop.example.com", "/api/", &web, true, Some(50 << 20)),
            ("shop.example.com", "/", &client, false, None),
            ("*.shop.example.com", "/", &web, false, None),
            ("localhost", "/assets/", &assets, false, None),
            ("*", "/", &web, false, Some(1 << 30)),
        ]
    );
    // The span points back at the route's table header.
    let source = std::fs::read_to_string(fixtures_dir().join("ok_full.toml")).unwrap();
    assert_eq!(&source[app.routes[0].span.0.clone()], "[[routes]]");

    assert_eq!(app.proxy.max_body, 20 << 20);
    assert_eq!(app.proxy.connect_timeout, Duration::from_secs(2));
    assert_eq!(app.proxy.response_timeout, Duration::from_secs(300));
    assert_eq!(app.proxy.balance, Balance::LeastRequests);
}

#[test]
fn diagnostics_api() {
    let source = "[app]\nname = \"x\"\n[services.web]\ncomand = \"y\"\ninstances = 0\n";
    let diags = spec::parse("berth.toml", source).unwrap_err();
    assert_eq!(diags.len(), 2, "{diags}");
    let first = diags.iter().next().unwrap();
    let span = first.span.clone().unwrap();
    assert_eq!(diags.line_col(span.start), (4, 1));
    let e: &dyn std::error::Error = &diags;
    assert!(e.to_string().ends_with("error: berth.toml has 2 problems"));
}

#[test]
fn environments_and_instance_names() {
    let source = std::fs::read_to_string(fixtures_dir().join("ok_env_staging.toml")).unwrap();
    let base = spec::parse("b.toml", &source).unwrap();
    assert_eq!(base.environment, None);
    assert_eq!(base.instance_name(), "shop");
    assert_eq!(base.environments, ["prod", "staging"]);
    assert_eq!(base.routes.len(), 2);
    assert_eq!(base.services["web"].instances, 4);

    let staging = spec::parse_env("b.toml", &source, Some("staging")).unwrap();
    assert_eq!(staging.instance_name(), "shop.staging");
    // Tables merge key by key: web keeps its command and its health path.
    let web = &staging.services["web"];
    assert_eq!((web.command.as_str(), web.instances), ("node web.js", 1));
    let health = web.health.clone().unwrap();
    assert_eq!(health.path, "/health");
    assert_eq!(health.interval, Duration::from_secs(5));
    // Arrays replace: one route, written in the overlay.
    assert_eq!(staging.routes.len(), 1);
    assert_eq!(
        &source[staging.routes[0].span.0.clone()],
        "[[environments.staging.routes]]"
    );
    assert_eq!(staging.env["NODE_ENV"], "production");
    assert_eq!(staging.env["LOG_LEVEL"], "debug");
    assert_eq!(staging.proxy.max_body, 20 << 20);
    assert_eq!(staging.proxy.balance, Balance::RoundRobin);

    let prod = spec::parse_env("b.toml", &source, Some("prod")).unwrap();
    assert_eq!(prod.instance_name(), "shop.prod");
    assert_eq!(prod.services["web"].instances, 8);
    assert_eq!(prod.routes, base.routes);
}

#[test]
fn resolve_env_expands_secrets_and_env() {
    let app = fixture("ok_secrets");
    let secret = |name: &str| match name {
        "DATABASE_URL" => Some("postgres://db/shop".to_owned()),
        "SESSION_KEY" => Some("k3y".to_owned()),
        "ID" => Some("uuid-1".to_owned()),
        _ => None,
    };
    let env = app.resolve_env(secret);
    assert_eq!(
        env["DATABASE_URL_RO"],
        "postgres://db/shop?target_session_attrs=read-only"
    );
    assert_eq!(env["SESSION_COOKIE"], "name=s; key=k3y");
    assert_eq!(
        env["SUMMARY"],
        "postgres://db/shop?target_session_attrs=read-only uuid-1"
    );
    assert_eq!(env["LITERAL"], "${HOME} stays, and so does $5");
    assert_eq!(env["DATABASE_URL"], "postgres://db/shop");
    // Secrets without a value are left out, not injected empty.
    assert!(!env.contains_key("SMTP_PASSWORD"));
}

#[test]
fn proxy_security_settings() {
    let app = fixture("ok_proxy_security");
    let p = &app.proxy;
    assert_eq!(p.headers, HeaderPreset::Strict);
    assert_eq!(
        p.set_headers,
        BTreeMap::from([
            (
                "Content-Security-Policy".to_owned(),
                Some("default-src 'self' https://cdn.example.com".to_owned())
            ),
            ("Cross-Origin-Opener-Policy".to_owned(), None),
            ("X-Frame-Options".to_owned(), None),
            (
                "X-Robots-Tag".to_owned(),
                Some("noindex, nofollow".to_owned())
            ),
        ])
    );
    let rate = |requests, secs, burst| RateSpec {
        requests,
        per: Duration::from_secs(secs),
        burst,
    };
    assert_eq!(p.rate_limits["general"], rate(20, 1, 40));
    assert_eq!(p.rate_limits["api"], rate(50, 1, 100));
    assert_eq!(p.rate_limits["auth"], rate(5, 60, 5));
    assert_eq!(p.rate_limits["bulk_upload-2"], rate(1000, 3600, 10));
    let net = |addr: &str, prefix| IpNet::new(addr.parse().unwrap(), prefix).unwrap();
    assert_eq!(
        p.trusted_proxies,
        [
            net("10.0.0.0", 8),
            net("127.0.0.1", 32),
            net("fd00::", 8),
            net("::1", 128)
        ]
    );
    let [api, login, site] = &app.routes[..] else {
        panic!("three routes expected");
    };
    assert_eq!(api.rate_limit.as_deref(), Some("api"));
    assert_eq!(api.headers, Some(HeaderPreset::Basic));
    assert_eq!(
        api.set_headers,
        BTreeMap::from([
            ("Content-Security-Policy".to_owned(), None),
            ("X-Robots-Tag".to_owned(), Some("noindex".to_owned())),
        ])
    );
    assert!(!api.force_headers);
    assert_eq!(login.rate_limit.as_deref(), Some("auth"));
    assert_eq!(login.headers, None);
    assert!(login.force_headers);
    assert_eq!(site.rate_limit.as_deref(), Some("general"));
    assert!(matches!(site.target, RouteTarget::Static { .. }));
}

#[test]
fn rates() {
    assert_eq!(
        spec::parse_rate("20/s burst 40"),
        Ok(RateSpec {
            requests: 20,
            per: Duration::from_secs(1),
            burst: 40
        })
    );
    assert_eq!(
        spec::parse_rate("20/sec").unwrap_err(),
        "unknown unit `sec`; write \"20/s\""
    );
}

#[test]
fn databases_and_backups() {
    let app = fixture("ok_backups");
    let postgres = |url: &str, verify_url: Option<&str>| DatabaseSpec {
        engine: DatabaseEngine::Postgres {
            url: url.to_owned(),
            verify_url: verify_url.map(str::to_owned),
        },
    };
    assert_eq!(
        app.databases,
        BTreeMap::from([
            (
                "main".to_owned(),
                postgres("${DATABASE_URL}", Some("${DRILL_DATABASE_URL}"))
            ),
            (
                "cache".to_owned(),
                DatabaseSpec {
                    engine: DatabaseEngine::Sqlite {
                        path: "data/app.db".to_owned()
                    }
                }
            ),
            (
                "local".to_owned(),
                postgres("postgresql:///shop?host=/run/postgresql", None)
            ),
        ])
    );
    assert_eq!(
        app.backups["nightly"],
        BackupSpec {
            source: BackupSource::Database("main".to_owned()),
            schedule: "0 2 * * *".to_owned(),
            keep: Keep {
                last: 3,
                daily: 7,
                weekly: 4,
                monthly: 12
            },
            to: BackupTarget::S3 {
                bucket: "bucket".to_owned(),
                prefix: "shop".to_owned()
            },
            verify: VerifyCadence::Daily,
        }
    );
    // Every default.
    assert_eq!(
        app.backups["cache"],
        BackupSpec {
            source: BackupSource::Database("cache".to_owned()),
            schedule: BackupSpec::DEFAULT_SCHEDULE.to_owned(),
            keep: Keep::default(),
            to: BackupTarget::Default,
            verify: VerifyCadence::Weekly,
        }
    );
    // A directory, normalized; keys left out of `keep` are 0.
    let uploads = &app.backups["uploads"];
    assert_eq!(
        uploads.source,
        BackupSource::Dir("uploads/images".to_owned())
    );
    assert_eq!(
        uploads.keep,
        Keep {
            last: 0,
            daily: 14,
            weekly: 0,
            monthly: 0
        }
    );
    assert_eq!(uploads.to, BackupTarget::Local("/srv/backups/shop".into()));
    assert_eq!(uploads.verify.as_str(), "off");
    assert_eq!(
        app.backups["archive"].to,
        BackupTarget::S3 {
            bucket: "archive.example-1".to_owned(),
            prefix: "shop/db".to_owned()
        }
    );
    assert_eq!(app.backups["reports"].keep.monthly, 24);

    // A database url resolves like an [env] value: through [env], to secrets.
    let DatabaseEngine::Postgres { url, verify_url } = &app.databases["main"].engine else {
        panic!("main is postgres");
    };
    let secret = |name: &str| (name == "DATABASE_URL").then(|| "postgres://db/shop".to_owned());
    assert_eq!(app.expand_template(url, secret), "postgres://db/shop");
    assert_eq!(
        app.expand_template(verify_url.as_deref().unwrap(), secret),
        "postgres://db/shop_drill"
    );
    assert_eq!(
        app.expand_template("${DATABASE_URL}", |_| None),
        "${DATABASE_URL}"
    );
}

#[test]
fn backups_in_environments() {
    let source = std::fs::read_to_string(fixtures_dir().join("ok_backups_staging.toml")).unwrap();
    let base = spec::parse("b.toml", &source).unwrap();
    let nightly = &base.backups["nightly"];
    assert_eq!(nightly.to, BackupTarget::Local("/srv/backups/shop".into()));
    assert_eq!(nightly.verify, VerifyCadence::Weekly);
    assert!(!base.databases.contains_key("files"));

    let staging = spec::parse_env("b.toml", &source, Some("staging")).unwrap();
    let nightly = &staging.backups["nightly"];
    assert_eq!(
        nightly.to,
        BackupTarget::Local("/srv/backups/shop-staging".into())
    );
    assert_eq!(nightly.verify, VerifyCadence::Off);
    assert_eq!(nightly.source, BackupSource::Database("main".to_owned()));
    // `keep` is a table: it merges key by key like every table of an overlay.
    assert_eq!(
        nightly.keep,
        Keep {
            last: 1,
            daily: 7,
            weekly: 0,
            monthly: 0
        }
    );
    // An environment may add a database.
    assert!(staging.databases.contains_key("files"));

    let prod = spec::parse_env("b.toml", &source, Some("prod")).unwrap();
    assert_eq!(prod.backups["nightly"].schedule, "0 3 * * *");
    assert_eq!(
        prod.backups["nightly"].to, base.backups["nightly"].to,
        "untouched keys stay"
    );
}

#[test]
fn alerts_and_notify() {
    let app = fixture("ok_alerts");
    let p95 = app.alerts.rule(AlertName::P95Latency);
    assert_eq!((p95.warn, p95.critical), (Some(0.5), Some(2.0)));
    assert_eq!(p95.for_, Duration::from_secs(300));
    let restarts = app.alerts.rule(AlertName::Restarts);
    assert_eq!((restarts.warn, restarts.critical), (Some(5.0), Some(10.0)));
    assert_eq!(restarts.within, Some(Duration::from_secs(3600)));
    assert!(!app.alerts.rule(AlertName::Memory).enabled);
    let cert = app.alerts.rule(AlertName::CertExpiry);
    assert_eq!((cert.warn, cert.critical), (None, Some(14.0 * 86_400.0)));
    assert_eq!(
        app.alerts.rule(AlertName::InstanceDown),
        AlertName::InstanceDown.default_rule()
    );
    assert_eq!(app.alerts.repeat, Duration::from_secs(3600));

    let app = fixture("ok_notify");
    assert_eq!(app.alerts, AlertsSpec::default());
    let kinds: Vec<&str> = app.notify.iter().map(|n| n.channel.kind()).collect();
    assert_eq!(
        kinds,
        [
            "webhook", "slack", "discord", "ntfy", "email", "email", "webhook"
        ]
    );
    assert_eq!(app.notify[0].events, NotifyEvent::ALL);
    assert_eq!(
        app.notify[1].events,
        [NotifyEvent::Alert, NotifyEvent::DeployFailed]
    );
    // URLs are templates, resolved like [env] values.
    let NotifyChannel::Ntfy(url) = &app.notify[3].channel else {
        panic!("ntfy expected");
    };
    assert_eq!(
        app.expand_template(url, |_| None),
        "https://ntfy.sh/shop-alerts"
    );
    let NotifyChannel::Email { smtp, .. } = &app.notify[5].channel else {
        panic!("email expected");
    };
    let secret = |name: &str| (name == "SMTP_PASSWORD").then(|| "pw".to_owned());
    assert_eq!(
        app.expand_template(smtp, secret),
        "smtps://alerts:pw@mail.example.com:465"
    );
}

#[test]
fn alerts_and_notify_in_environments() {
    let source = std::fs::read_to_string(fixtures_dir().join("ok_alerts_staging.toml")).unwrap();
    let slack = |secret: &str| NotifySpec {
        channel: NotifyChannel::Slack(format!("${{{secret}}}")),
        events: NotifyEvent::ALL.to_vec(),
    };
    let base = spec::parse("b.toml", &source).unwrap();
    let p95 = base.alerts.rule(AlertName::P95Latency);
    assert_eq!((p95.warn, p95.critical), (Some(0.4), Some(2.0)));
    assert!(!base.alerts.rule(AlertName::BackupAge).enabled);
    assert_eq!(base.notify.len(), 2);
    assert_eq!(base.notify[0], slack("SLACK_WEBHOOK_URL"));

    // [alerts] merges key by key, and within an alert field by field.
    let staging = spec::parse_env("b.toml", &source, Some("staging")).unwrap();
    let p95 = staging.alerts.rule(AlertName::P95Latency);
    assert_eq!((p95.warn, p95.critical), (Some(0.4), Some(5.0)));
    assert!(!staging.alerts.rule(AlertName::BackupAge).enabled);
    assert_eq!(staging.alerts.repeat, Duration::from_secs(12 * 3600));
    // [[notify]] is an array of tables: the overlay's list replaces the base's, like routes.
    assert_eq!(
        staging.notify,
        [NotifySpec {
            events: vec![NotifyEvent::DeployFailed, NotifyEvent::Rollback],
            ..slack("STAGING_SLACK_WEBHOOK_URL")
        }]
    );

    // A table replaces `false`: the alert is on again, the fields left out are the defaults.
    let prod = spec::parse_env("b.toml", &source, Some("prod")).unwrap();
    let backup_age = prod.alerts.rule(AlertName::BackupAge);
    assert!(backup_age.enabled);
    assert_eq!(
        (backup_age.warn, backup_age.critical),
        (Some(25.0 * 3600.0), Some(26.0 * 3600.0))
    );
    assert_eq!(prod.alerts.repeat, AlertsSpec::DEFAULT_REPEAT);
    assert_eq!(
        prod.notify, base.notify,
        "no notify key: the base's list stays"
    );
}
