//! Monitoring through the real binary, with real components on the other end: `/metrics`
//! under load checked by promtool and scraped by a real Prometheus; alerts going pending,
//! firing and resolved with notifications to HTTP receivers on loopback and to aiosmtpd; the
//! dashboard in headless Chromium.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// How long anything in these tests may take to happen.
const LIMIT: Duration = Duration::from_secs(30);

/// The dashboard's Content-Security-Policy, as the daemon sends it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

// ---------------------------------------------------------------------------------------------
// 1. /metrics under load, promtool, a real Prometheus.

#[test]
fn metrics_under_load_pass_promtool_and_reach_prometheus() {
    let d = Daemon::start_with(
        &[
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--sample-interval",
            "1s",
        ],
        &[],
    );
    let admin = admin(&d);
    // Many routes on one app, so that the scrape's cost per route shows.
    let beta_paths: Vec<String> = (0..50).map(|i| format!("/r{i}/")).collect();
    let alpha = web_app("alpha", "alpha.test", &["/".to_owned()]);
    let beta = web_app("beta", "beta.test", &beta_paths);
    for dir in [&alpha, &beta] {
        let run = d.berth(&["deploy", dir.path().to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}");
    }

    let beta_some: Vec<&str> = beta_paths.iter().take(5).map(String::as_str).collect();
    let loads = [
        Load::start(d.http, "alpha.test", &["/"], 2, Duration::from_millis(50)),
        Load::start(
            d.http,
            "beta.test",
            &beta_some,
            2,
            Duration::from_millis(50),
        ),
    ];
    wait_for("some load answered on both apps", LIMIT, || {
        loads.iter().all(|l| l.ok() >= 50)
    });

    let (status, metrics) = http_get(admin, "localhost", "/metrics").unwrap();
    assert_eq!(status, 200);
    testkit::promtool_check(&metrics);
    for (name, labels) in [
        ("berth_instance_ready", "app=\"alpha\""),
        ("berth_instance_ready", "app=\"beta\""),
        ("berth_instance_cpu_seconds_total", "app=\"alpha\""),
        ("berth_instance_memory_bytes", "app=\"beta\""),
        ("berth_proxy_requests_total", "route=\"alpha:alpha.test/\""),
        ("berth_proxy_requests_total", "route=\"beta:beta.test/r0/\""),
        ("process_resident_memory_bytes", ""),
        ("berth_disk_free_bytes", ""),
        ("berth_deploys_total", "result=\"ok\""),
    ] {
        let values = samples(&metrics, name, labels);
        assert!(!values.is_empty(), "no {name} {{{labels}}} in:\n{metrics}");
    }
    for app in ["alpha", "beta"] {
        let ready = samples(&metrics, "berth_instance_ready", &format!("app=\"{app}\""));
        assert_eq!(ready, [1.0], "{app} ready");
        let deploys = samples(
            &metrics,
            "berth_deploys_total",
            &format!("app=\"{app}\",kind=\"deploy\",result=\"ok\""),
        );
        assert_eq!(deploys, [1.0], "{app}'s deploys");
    }
    let answered = samples(
        &metrics,
        "berth_proxy_requests_total",
        "route=\"alpha:alpha.test/\",service=\"web\",class=\"2xx\"",
    );
    assert!(answered[0] >= 50.0, "{answered:?}");
    assert!(samples(&metrics, "process_resident_memory_bytes", "")[0] > 1e6);
    assert!(samples(&metrics, "berth_disk_free_bytes", "")[0] > 0.0);

    // What one scrape costs with 51 routes: printed, not asserted (the target is < 5 ms).
    let mut took: Vec<Duration> = (0..20)
        .map(|_| {
            let start = Instant::now();
            let (status, _) = http_get(admin, "localhost", "/metrics").unwrap();
            assert_eq!(status, 200);
            start.elapsed()
        })
        .collect();
    took.sort();
    report(&format!(
        "one scrape of /metrics ({} routes, {} lines, {} bytes): min {:?}, median {:?}, max {:?}",
        beta_paths.len() + 1,
        metrics.lines().count(),
        metrics.len(),
        took[0],
        took[took.len() / 2],
        took[took.len() - 1],
    ));

    // A real Prometheus scrapes the admin listener every second.
    let prometheus = Prometheus::start(admin);
    let up = prometheus.wait_for("up == 1", "up", |result| {
        result.iter().any(|s| s["value"][1] == "1")
    });
    assert_eq!(up[0]["metric"]["instance"], admin.to_string(), "{up:?}");
    let rates = prometheus.wait_for(
        "a request rate on alpha's route",
        "rate(berth_proxy_requests_total{class=\"2xx\"}[5s]) > 0",
        |result| {
            result
                .iter()
                .any(|s| s["metric"]["route"] == "alpha:alpha.test/")
        },
    );
    let routes: Vec<&str> = rates
        .iter()
        .filter_map(|s| s["metric"]["route"].as_str())
        .collect();
    assert!(routes.contains(&"alpha:alpha.test/"), "{routes:?}");
    drop(loads);
}

/// A measurement or a file to look at, shown with `--no-capture`.
#[allow(clippy::print_stderr)]
fn report(what: &str) {
    eprintln!("{what}");
}

/// The daemon's admin listener, from `berth status`.
fn admin(d: &Daemon) -> SocketAddr {
    let status = d.status();
    status["daemon"]["admin"]
        .as_str()
        .unwrap_or_else(|| panic!("no admin address in {status}"))
        .parse()
        .unwrap()
}

/// An app of one [`PY_WEB`] service with a route on `host` for each of `paths`.
fn web_app(name: &str, host: &str, paths: &[String]) -> tempfile::TempDir {
    let routes: String = paths
        .iter()
        .map(|p| format!("[[routes]]\nhost = \"{host}\"\npath = \"{p}\"\nservice = \"web\"\n\n"))
        .collect();
    app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"{name}\"\n\n[services.web]\ncommand = \"python3 -u web.py\"\n\
                 health = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }}\n\n{routes}"
            ),
        ),
        ("web.py", PY_WEB),
    ])
}

/// The values of the samples of `name` whose labels contain `labels` (text as exposed).
fn samples(metrics: &str, name: &str, labels: &str) -> Vec<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let matches = match rest.strip_prefix('{') {
                Some(inner) => inner.contains(labels),
                None => rest.is_empty() && labels.is_empty(),
            };
            matches.then(|| value.parse().ok()).flatten()
        })
        .collect()
}

/// `prometheus` (Debian package) on loopback scraping one target every second, in a
/// temporary directory; killed on drop.
struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus) must be installed");
        let mut p = Prometheus { child, dir, addr };
        wait_for("prometheus to be ready", LIMIT, || {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", p.log());
            }
            http_get(p.addr, "localhost", "/-/ready").is_some_and(|(s, _)| s == 200)
        });
        p
    }

    /// Runs the instant `query` until `done` accepts its result vector; returns that.
    fn wait_for(&self, what: &str, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + LIMIT;
        loop {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "5", "-G", "--data-urlencode"])
                .arg(format!("query={query}"))
                .arg(format!("http://{}/api/v1/query", self.addr))
                .output()
                .expect("curl must be installed");
            let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let result = answer["data"]["result"].as_array().cloned();
            if let Some(result) = result.filter(|r| done(r)) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {LIMIT:?} waiting for {what}; `{query}` answered {answer}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Alerts pending, firing, resolved; notifications.

/// A service whose behaviour is switched at run time: `GET /mode?slow=SECONDS&fail=1` makes
/// every other path (but /health) wait that long and answer 500.
const PY_SWITCH: &str = r#"
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
MODE = {"slow": 0.0, "fail": False}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        url = urlsplit(self.path)
        status = 200
        if url.path == "/mode":
            q = parse_qs(url.query)
            MODE["slow"] = float(q.get("slow", ["0"])[0])
            MODE["fail"] = q.get("fail", ["0"])[0] == "1"
            body = "slow %s fail %s\n" % (MODE["slow"], MODE["fail"])
        elif url.path == "/health":
            body = "ok\n"
        else:
            time.sleep(MODE["slow"])
            status = 500 if MODE["fail"] else 200
            body = "failing\n" if MODE["fail"] else "fine\n"
        body = body.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// Parts of the channels' secret URLs that no output may show.
const SLACK_TOKEN: &str = "slk-tok-5e3r3t";
const DISCORD_TOKEN: &str = "dsc-tok-5e3r3t";
const DEAD_TOKEN: &str = "dead-tok-5e3r3t";

#[test]
fn alerts_fire_notify_and_resolve() {
    let smtp = testkit::Smtp::start();
    let receiver = Receiver::start();
    // The machine's own disk is not what this test is about: its alert is off.
    let d = Daemon::start_with(
        &[
            "--http",
            "127.0.0.1:0",
            "--sample-interval",
            "1s",
            "--alert-disk-free",
            "off",
        ],
        &[],
    );
    let notes = app(&[
        (
            "berth.toml",
            &format!(
                "[app]\nname = \"notes\"\n\n\
                 [secrets]\nSLACK_URL = {{ required = true }}\nDISCORD_URL = {{ required = true }}\nSMTP_URL = {{ required = true }}\n\n\
                 [alerts]\n\
                 p95_latency = {{ warn = \"200ms\", critical = \"400ms\", for = \"3s\" }}\n\
                 error_rate = {{ warn = \"5%\", critical = \"20%\", for = \"3s\" }}\n\
                 disk_free = false\n\n\
                 [[notify]]\nwebhook = \"{}\"\n\n\
                 [[notify]]\nslack = \"${{SLACK_URL}}\"\n\n\
                 [[notify]]\ndiscord = \"${{DISCORD_URL}}\"\n\n\
                 [[notify]]\nemail = {{ to = \"ops@example.com\", smtp = \"${{SMTP_URL}}\" }}\n\n\
                 [services.web]\ncommand = \"python3 -u web.py\"\n\
                 health = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }}\n\n\
                 [[routes]]\nhost = \"notes.test\"\npath = \"/\"\nservice = \"web\"\n",
                receiver.url("/alertmanager"),
            ),
        ),
        ("web.py", PY_SWITCH),
    ]);
    // One channel nobody listens on: a port bound and closed again.
    let dead_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mute = app(&[
        (
            "berth.toml",
            "[app]\nname = \"mute\"\n\n[secrets]\nDEAD_URL = { required = true }\n\n\
             [[notify]]\nwebhook = \"${DEAD_URL}\"\n\n\
             [services.web]\ncommand = \"python3 -u web.py\"\n\
             health = { path = \"/health\", interval = \"100ms\", timeout = \"100ms\" }\n\n\
             [[routes]]\nhost = \"mute.test\"\npath = \"/\"\nservice = \"web\"\n",
        ),
        ("web.py", PY_WEB),
    ]);
    let mut outputs: Vec<String> = Vec::new();
    let mut keep = |run: &Run| outputs.push(format!("{run:?}"));
    for (app, name, value) in [
        (
            "notes",
            "SLACK_URL",
            receiver.url(&format!("/slack/T0/B0/{SLACK_TOKEN}")),
        ),
        (
            "notes",
            "DISCORD_URL",
            receiver.url(&format!("/discord/api/webhooks/1/{DISCORD_TOKEN}")),
        ),
        ("notes", "SMTP_URL", smtp.url()),
        (
            "mute",
            "DEAD_URL",
            format!("http://127.0.0.1:{dead_port}/hook/{DEAD_TOKEN}"),
        ),
    ] {
        let run = berth_stdin(&d, &["secrets", "set", "--new", app, name], &value);
        assert_eq!(run.code, 0, "{run:?}");
        keep(&run);
    }
    for dir in [&notes, &mute] {
        let run = d.berth(&["deploy", dir.path().to_str().unwrap()]);
        assert_eq!(run.code, 0, "{run:?}");
        keep(&run);
    }

    // A channel that cannot be reached is retried for a while before it is reported: that
    // runs beside the rest of the test.
    let state = d.path().to_owned();
    let dead_test = std::thread::spawn(move || berth(&state, &["notify", "test", "mute"]));

    // Every channel of notes gets a test message.
    let run = d.berth(&["notify", "test", "notes"]);
    keep(&run);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{run:?}");
    assert!(lines.iter().all(|l| l.starts_with("ok ")), "{run:?}");
    assert!(
        run.stdout.contains("email ops@example.com via 127.0.0.1"),
        "{run:?}"
    );
    let test_text = "If you can read this";
    let hook = receiver.wait_for("/alertmanager", |b| b.contains(test_text));
    assert_eq!(
        json(&hook)["alerts"][0]["labels"]["alertname"],
        "test",
        "{hook}"
    );
    let slack = receiver.wait_for("/slack/", |b| b.contains(test_text));
    assert!(json(&slack)["text"].is_string(), "{slack}");
    let discord = receiver.wait_for("/discord/", |b| b.contains(test_text));
    assert!(json(&discord)["content"].is_string(), "{discord}");
    let mail = smtp.wait_for_messages(1, LIMIT);
    let subject = mail[0].header("Subject").unwrap_or_default();
    assert!(subject.contains("test notification"), "{subject}");

    // Steady load, then slow and failing.
    let load = Load::start(d.http, "notes.test", &["/"], 4, Duration::from_millis(200));
    wait_for("some answers before the switch", LIMIT, || load.ok() >= 20);
    assert_eq!(switch(&d, 0.6, true), 200);
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let firing = wait_for("p95_latency and error_rate firing", LIMIT, || {
        let run = d.berth(&["alerts", "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        let list: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
        let mine: Vec<Value> = list.into_iter().filter(|a| a["app"] == "notes").collect();
        for a in &mine {
            let states = seen
                .entry(a["alert"].as_str().unwrap().to_owned())
                .or_default();
            let state = a["state"].as_str().unwrap().to_owned();
            if states.last() != Some(&state) {
                states.push(state);
            }
        }
        let both = ["p95_latency", "error_rate"].iter().all(|name| {
            mine.iter().any(|a| {
                a["alert"] == *name && a["state"] == "firing" && a["severity"] == "critical"
            })
        });
        both.then_some(mine)
    });
    for name in ["p95_latency", "error_rate"] {
        assert_eq!(seen[name][0], "pending", "{name} went {:?}", seen[name]);
    }
    let alert = |name: &str| firing.iter().find(|a| a["alert"] == name).unwrap().clone();
    let p95 = alert("p95_latency");
    assert_eq!(p95["threshold"], "400ms", "{p95}");
    assert_eq!(p95["subject"], "notes.test/", "{p95}");
    let value = p95["value"].as_str().unwrap();
    assert!(value.ends_with("ms") || value.ends_with('s'), "{p95}");
    let errors = alert("error_rate");
    assert_eq!(errors["threshold"], "20.0%", "{errors}");
    assert!(errors["value"].as_str().unwrap().ends_with('%'), "{errors}");
    let text = d.berth(&["alerts"]);
    keep(&text);
    assert!(
        text.stdout.contains("firing") && text.stdout.contains("p95_latency"),
        "{text:?}"
    );

    let health = d.berth(&["health", "notes"]);
    keep(&health);
    assert_eq!(health.code, 1, "{health:?}");
    assert!(
        health
            .stdout
            .lines()
            .any(|l| l.starts_with("CRITICAL") && l.contains("notes") && l.contains("p95_latency")),
        "{health:?}"
    );

    let history = d.berth(&["history", "notes", "--json"]);
    keep(&history);
    assert_eq!(history.code, 0, "{history:?}");
    let events: Value = json(&history.stdout)["events"].clone();
    let alert_events: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "alert")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    for name in ["p95_latency", "error_rate"] {
        for word in ["pending", "firing"] {
            assert!(
                alert_events
                    .iter()
                    .any(|e| e.starts_with(name) && e.contains(word)),
                "no {name} {word} event in {alert_events:#?}"
            );
        }
    }

    // Each channel heard of both alerts firing.
    for name in ["p95_latency", "error_rate"] {
        // (A warning may come first, if the value crossed the warning threshold alone.)
        let hook = receiver.wait_for("/alertmanager", |b| {
            let labels = &json(b)["alerts"][0]["labels"];
            json(b)["status"] == "firing"
                && labels["alertname"] == name
                && labels["severity"] == "critical"
        });
        assert_eq!(json(&hook)["alerts"][0]["labels"]["app"], "notes", "{hook}");
        // One headline: state, severity and app once each.
        let headline = format!("[FIRING critical] notes: {name} of notes.test/ is ");
        receiver.wait_for("/slack/", |b| {
            json(b)["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(&headline))
        });
        receiver.wait_for("/discord/", |b| {
            json(b)["content"]
                .as_str()
                .is_some_and(|c| c.starts_with(&headline))
        });
    }
    wait_for("both alerts by email", LIMIT, || {
        let subjects: Vec<String> = smtp
            .messages()
            .iter()
            .filter_map(|m| m.header("Subject"))
            .collect();
        ["p95_latency", "error_rate"].iter().all(|n| {
            let headline = format!("[FIRING critical] notes: {n} of notes.test/ is ");
            subjects.iter().any(|s| s.starts_with(&headline))
        })
    });

    // Back to fast and fine: both resolve.
    assert_eq!(switch(&d, 0.0, false), 200);
    wait_for("the alerts of notes to resolve", LIMIT, || {
        let run = d.berth(&["alerts", "--json"]);
        let list: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
        list.iter().all(|a| a["app"] != "notes")
    });
    for name in ["p95_latency", "error_rate"] {
        receiver.wait_for("/alertmanager", |b| {
            let v = json(b);
            v["status"] == "resolved" && v["alerts"][0]["labels"]["alertname"] == name
        });
        receiver.wait_for("/slack/", |b| b.contains("RESOLVED") && b.contains(name));
        receiver.wait_for("/discord/", |b| b.contains("RESOLVED") && b.contains(name));
    }
    let health = d.berth(&["health", "notes"]);
    keep(&health);
    assert_eq!(health.code, 0, "{health:?}");
    assert!(health.stdout.starts_with("OK"), "{health:?}");
    drop(load);

    // The dead channel: FAILED, exit 1, and `berth status` shows it failing.
    let dead = dead_test.join().unwrap();
    keep(&dead);
    assert_eq!(dead.code, 1, "{dead:?}");
    assert!(dead.stdout.starts_with("FAILED  webhook"), "{dead:?}");
    let run = d.berth(&["status", "--json"]);
    keep(&run);
    let status = json(&run.stdout);
    let mute = status["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "mute")
        .unwrap();
    let notifiers = mute["notifiers"].as_array().unwrap();
    assert_eq!(notifiers.len(), 1, "{mute}");
    assert_eq!(notifiers[0]["ok"], false, "{mute}");
    assert!(notifiers[0]["last_error"].is_string(), "{mute}");

    // No secret in anything berth said.
    let log = d.log();
    for token in [SLACK_TOKEN, DISCORD_TOKEN, DEAD_TOKEN] {
        for out in &outputs {
            assert!(!out.contains(token), "{token} shown in {out}");
        }
        assert!(!log.contains(token), "{token} in the daemon's log:\n{log}");
    }
}

/// Switches notes' service; the status of the answer.
fn switch(d: &Daemon, slow: f64, fail: bool) -> u16 {
    let path = format!("/mode?slow={slow}&fail={}", u8::from(fail));
    http_get(d.http, "notes.test", &path).unwrap().0
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// An HTTP server on loopback that answers 200 to every request and keeps what it got, for
/// webhooks (HTTP/1.1, keep-alive, `content-length` or chunked bodies).
struct Receiver {
    addr: SocketAddr,
    /// (path, body) of every request so far.
    got: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let log = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || receive(stream, &log));
            }
        });
        Receiver { addr, got }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits for a request under `path` whose body `done` accepts; returns that body.
    fn wait_for(&self, path: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let found = self
                .got
                .lock()
                .unwrap()
                .iter()
                .find(|(p, b)| p.starts_with(path) && done(b))
                .map(|(_, b)| b.clone());
            if let Some(body) = found {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a request to {path}; got:\n{:#?}",
                self.got.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn receive(stream: TcpStream, log: &Mutex<Vec<(String, String)>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        let mut chunked = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or_default();
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length, 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        log.lock()
            .unwrap()
            .push((path, String::from_utf8_lossy(&body).into_owned()));
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. The dashboard in headless Chromium.

#[test]
fn dashboard_shows_a_live_app_in_a_browser() {
    let d = Daemon::start_with(
        &[
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--sample-interval",
            "1s",
        ],
        &[],
    );
    let admin = admin(&d);
    let shop = web_app("shop", "shop.test", &["/".to_owned(), "/api/".to_owned()]);
    let run = d.berth(&["deploy", shop.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    let _load = Load::start(
        d.http,
        "shop.test",
        &["/", "/api/x"],
        2,
        Duration::from_millis(50),
    );

    let run = d.berth(&["dashboard", "url"]);
    assert_eq!(run.code, 0, "{run:?}");
    let url = run.stdout.trim().to_owned();
    let prefix = format!("http://{admin}/dashboard?token=");
    let token = url
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{url} does not start with {prefix}"));
    assert!(token.len() >= 32, "{url}");

    // Over plain HTTP: no cookie, no dashboard; the token is traded for the cookie.
    let cookie = format!("berth_dashboard={token}");
    let page = request(admin, "/dashboard", None);
    assert_eq!(page.status, 401, "{page:?}");
    assert!(page.body.contains("berth dashboard url"), "{page:?}");
    assert_eq!(
        page.header("content-security-policy"),
        Some(CSP),
        "{page:?}"
    );
    let api = request(admin, "/dashboard/api/overview", None);
    assert_eq!(api.status, 401, "{api:?}");
    let wrong = request(admin, &format!("/dashboard?token={}", "0".repeat(64)), None);
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let traded = request(admin, &format!("/dashboard?token={token}"), None);
    assert_eq!(traded.status, 303, "{traded:?}");
    assert_eq!(traded.header("location"), Some("/dashboard"), "{traded:?}");
    let set_cookie = traded.header("set-cookie").unwrap_or_default();
    assert!(
        set_cookie.starts_with(&format!("{cookie};"))
            && set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict"),
        "{traded:?}"
    );
    let page = request(admin, "/dashboard", Some(&cookie));
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(
        page.header("content-security-policy"),
        Some(CSP),
        "{page:?}"
    );
    assert_eq!(
        page.header("x-content-type-options"),
        Some("nosniff"),
        "{page:?}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"), "{page:?}");
    let api = request(admin, "/dashboard/api/overview", Some(&cookie));
    assert_eq!(api.status, 200, "{api:?}");

    let mut chromium = testkit::Chromium::start();

    // A browser without the cookie gets the 401 page and its message.
    let mut outside = chromium.new_page();
    outside.expect_failure("/dashboard");
    outside.goto(&format!("http://{admin}/dashboard"));
    let text = outside.text("body");
    assert!(
        text.contains("needs its token") && text.contains("berth dashboard url"),
        "{text}"
    );

    // With the token: redirected to /dashboard, then the app, its instance and a chart.
    let mut page = chromium.new_page();
    page.set_viewport(1280, 900);
    page.goto(&url);
    assert_eq!(
        page.eval("location.href"),
        format!("http://{admin}/dashboard"),
        "the token is gone from the address bar"
    );
    assert_eq!(page.eval("document.cookie"), "", "the cookie is HttpOnly");
    page.wait_for(
        "document.getElementById('live').textContent === 'live'",
        LIMIT,
    );
    page.wait_for("document.querySelector('[data-app=shop] h2')", LIMIT);
    assert_eq!(page.text("[data-app=shop] h2"), "shop");
    let row = page
        .wait_for(
            "(() => { const r = document.querySelector('[data-app=shop] tr.instance');
                return r && r.innerText.includes('%') && r.innerText; })()",
            LIMIT,
        )
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(row.contains("web/0") && row.contains("ready"), "{row}");
    let points = page.wait_for(
        "(() => { const l = document.querySelector('[data-app=shop] .chart-box.requests svg.chart polyline');
            return l && l.getAttribute('points').trim(); })()",
        LIMIT,
    );
    assert!(points.as_str().unwrap().contains(','), "{points}");
    let latency = page.wait_for(
        "document.querySelector('[data-app=shop] .chart-box.latency .chart-now').textContent",
        LIMIT,
    );
    assert!(latency.as_str().unwrap().contains("ms"), "{latency}");

    let errors = page.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let failed = page.failed_requests();
    assert!(failed.is_empty(), "failed requests: {failed:#?}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-live.png");
    page.screenshot(&shot);
    report(&format!("screenshot: {}", shot.display()));
}

/// One answer, headers included.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.status)?;
        for (n, v) in &self.headers {
            writeln!(f, "{n}: {v}")?;
        }
        write!(f, "\n{}", self.body)
    }
}

/// A GET with `Connection: close` and maybe a cookie (answers of the admin listener have a
/// `content-length`).
fn request(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------

/// Clients GETting `paths` (in turn) on `host` through the proxy until dropped, each pausing
/// between requests.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(
        proxy: SocketAddr,
        host: &str,
        paths: &[&str],
        clients: usize,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|i| {
                let (stop, ok) = (stop.clone(), ok.clone());
                let host = host.to_owned();
                let paths: Vec<String> = paths.iter().map(|p| (*p).to_owned()).collect();
                std::thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        if http_get(proxy, &host, &paths[n % paths.len()]).is_some() {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        n += 1;
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();
        Load { stop, ok, threads }
    }

    /// Requests answered so far (any status).
    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
