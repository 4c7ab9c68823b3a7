//! The dashboard's page (`crates/daemon/assets/dashboard/`) in a real browser: a small server
//! on loopback serves its three files, with the daemon's CSP, and fixture JSON for its API
//! (overview, series, an event stream); headless Chromium opens it.
//!
//! Screenshots go to the test's output directory (`$CARGO_TARGET_TMPDIR`, i.e.
//! `target/tmp/dashboard*.png`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use testkit::{Chromium, Page};

const INDEX: &str = include_str!("../../daemon/assets/dashboard/index.html");
const APP_JS: &str = include_str!("../../daemon/assets/dashboard/app.js");
const STYLE: &str = include_str!("../../daemon/assets/dashboard/style.css");

/// The Content-Security-Policy the daemon sends with the dashboard.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

/// How long the page may take to show something.
const LIMIT: Duration = Duration::from_secs(20);

/// A deploy's reason with markup in it: the page must show it as text.
const HOSTILE: &str = "readiness failed: <img src=x onerror=alert(1)>";

#[test]
fn shows_apps_alerts_and_charts_live() {
    let site = Site::start(Access::Granted, Stream::Held);
    let mut chromium = Chromium::start();
    let mut page = chromium.new_page();
    page.set_viewport(1280, 900);
    page.goto(&site.url("/dashboard"));

    // The stream's overview (the daemon up 2 h 1 min) replaces the first one (2 min).
    page.wait_for(
        "document.getElementById('live').textContent === 'live'",
        LIMIT,
    );
    page.wait_for(
        "document.getElementById('daemon').textContent.includes('up 2 h 1 min')",
        LIMIT,
    );
    assert_eq!(page.text("#version"), "v0.1.0");
    assert_eq!(page.text("[data-app=shop] h2"), "shop");

    let rows = page.eval("document.querySelectorAll('[data-app=shop] tr.instance').length");
    assert_eq!(rows, 2);
    let row = page.text("[data-app=shop] tr.instance");
    for part in ["web/0", "ready", "1.2%", "11.8 MiB / 128 MiB", "1 min"] {
        assert!(
            row.contains(part),
            "{part:?} not in the instance row {row:?}"
        );
    }
    let alerts = page.text("#alerts");
    assert!(alerts.contains("p95 latency"), "{alerts}");
    assert!(
        alerts.to_lowercase().contains("firing · critical"),
        "{alerts}"
    );
    let app = page.text("[data-app=shop]");
    for part in [
        "release r3",
        "example.com/",
        "nightly",
        "30 d left",
        "slack (…/AbCd)",
        HOSTILE,
    ] {
        assert!(app.contains(part), "{part:?} not in the app's card:\n{app}");
    }
    assert_eq!(page.eval("document.querySelectorAll('img').length"), 0);
    let blog = page.text("[data-app=blog]");
    for part in [
        "Maintenance",
        "restoring backup nightly-2026-12-01",
        "12 d left",
        "rate limited",
    ] {
        assert!(
            blog.contains(part),
            "{part:?} not in the blog's card:\n{blog}"
        );
    }

    // Charts: the request rate is two polylines around the fixture's gap.
    page.wait_for(
        "document.querySelector('[data-app=shop] svg.chart polyline')",
        LIMIT,
    );
    let lines = page.eval(
        "[...document.querySelector('[data-app=shop] svg.chart').querySelectorAll('polyline')]
            .map(l => l.getAttribute('points').trim().split(' ').length)",
    );
    assert_eq!(
        lines,
        json!([200, 145]),
        "points per polyline of the request chart"
    );
    let charts = page.eval("document.querySelectorAll('[data-app=shop] svg.chart').length");
    assert_eq!(charts, 5);

    // A tick makes the page fetch the series again.
    testkit::wait_for("the series fetched again after a tick", LIMIT, || {
        site.requests("/dashboard/api/series?app=shop&window=1h") >= 2
    });

    // Hovering a chart shows the values at that time.
    let point = page.eval(
        "(() => { const r = document.querySelector('[data-app=shop] .chart-box.latency svg').getBoundingClientRect();
            return [r.left + r.width * 0.3, r.top + r.height / 2]; })()",
    );
    page.cdp(
        "Input.dispatchMouseEvent",
        json!({ "type": "mouseMoved", "x": point[0], "y": point[1] }),
    );
    let tip = page.wait_for(
        "(() => { const t = document.querySelector('[data-app=shop] .chart-box.latency .tip');
            return !t.hidden && t.textContent; })()",
        LIMIT,
    );
    let tip = tip.as_str().unwrap_or_default();
    assert!(
        tip.contains("p50") && tip.contains("p99") && tip.contains(" ms"),
        "{tip}"
    );
    let widths =
        page.eval("[document.documentElement.scrollWidth, document.documentElement.clientWidth]");
    assert_eq!(
        widths,
        json!([1280, 1280]),
        "the tooltip stays inside the page"
    );

    assert_clean(&mut page);
    page.screenshot(&output("dashboard.png"));

    page.cdp(
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
    );
    page.screenshot(&output("dashboard-dark.png"));

    // The window switch asks for 24 hours.
    page.eval("document.querySelector('[data-app=shop] button[data-window=\"24h\"]').click()");
    testkit::wait_for("the 24 h series", LIMIT, || {
        site.requests("/dashboard/api/series?app=shop&window=24h") >= 1
    });
    page.wait_for(
        "document.querySelector('[data-app=shop] svg.chart').getAttribute('aria-label').endsWith('24h')",
        LIMIT,
    );
    let pressed = page.eval(
        "document.querySelector('[data-app=shop] button[data-window=\"24h\"]').getAttribute('aria-pressed')",
    );
    assert_eq!(pressed, "true");
    assert_clean(&mut page);
}

#[test]
fn fits_a_phone_screen() {
    let site = Site::start(Access::Granted, Stream::Held);
    let mut chromium = Chromium::start();
    let mut page = chromium.new_page();
    page.set_phone_viewport(375, 812);
    page.goto(&site.url("/dashboard"));
    page.wait_for(
        "document.querySelector('[data-app=shop] svg.chart polyline')",
        LIMIT,
    );

    let widths = page.eval(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]",
    );
    assert_eq!(
        widths,
        json!([375, 375, 375]),
        "scroll width, client width, window width"
    );
    let columns = page.eval(
        "['.cols', '.panels', '.charts'].map(s =>
            getComputedStyle(document.querySelector(s)).gridTemplateColumns.split(' ').length)",
    );
    assert_eq!(
        columns,
        json!([1, 1, 1]),
        "one column for .cols, .panels and .charts"
    );

    assert_clean(&mut page);
    page.screenshot(&output("dashboard-phone.png"));
}

#[test]
fn asks_for_the_token_when_the_api_answers_401() {
    let site = Site::start(Access::Denied, Stream::Held);
    let mut chromium = Chromium::start();
    let mut page = chromium.new_page();
    page.expect_failure("/dashboard/api/");
    page.goto(&site.url("/dashboard"));

    page.wait_for(
        "document.getElementById('notice').innerText.includes('open the URL from berth dashboard url')",
        LIMIT,
    );
    assert_eq!(page.text("#live"), "signed out");
    assert_eq!(
        page.eval("document.querySelectorAll('[data-app]').length"),
        0
    );
    assert_eq!(site.requests("/dashboard/api/overview"), 1);
    assert_eq!(
        site.requests("/dashboard/api/stream"),
        0,
        "no stream without the token"
    );
    let unauthorized = page
        .console_messages()
        .iter()
        .any(|m| m.source == "network" && m.text.contains("401"));
    assert!(
        unauthorized,
        "the browser saw no 401: {:?}",
        page.console_messages()
    );

    assert_clean(&mut page);
    page.screenshot(&output("dashboard-401.png"));
}

#[test]
fn says_reconnecting_while_the_stream_is_down() {
    let site = Site::start(Access::Granted, Stream::DroppedOnce);
    let mut chromium = Chromium::start();
    let mut page = chromium.new_page();
    page.goto(&site.url("/dashboard"));

    // The first stream ends after its events; EventSource tries again after `retry` (1 s).
    page.wait_for(
        "document.getElementById('live').textContent === 'reconnecting…'",
        LIMIT,
    );
    testkit::wait_for("the stream opened again", LIMIT, || {
        site.requests("/dashboard/api/stream") >= 2
    });
    page.wait_for(
        "document.getElementById('live').textContent === 'live'",
        LIMIT,
    );
    assert_clean(&mut page);
}

/// No console errors (CSP violations included) and no failed requests but those expected.
fn assert_clean(page: &mut Page) {
    let errors = page.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let failed = page.failed_requests();
    assert!(failed.is_empty(), "failed requests: {failed:#?}");
}

fn output(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------------------------
// The fixture data: what the daemon's dashboard API answers.

fn overview(uptime_secs: u64) -> Value {
    json!({
        "daemon": { "version": "0.1.0", "uptime_secs": uptime_secs, "state_dir": "/var/lib/berth" },
        "apps": [{
            "name": "shop",
            "release": "r3",
            "maintenance": null,
            "instances": [
                { "service": "web", "instance": 0, "release": "r3", "state": "ready", "pid": 1234,
                  "cpu_percent": 1.2, "memory_bytes": 12_345_678, "memory_max": 134_217_728,
                  "restarts": 0, "uptime_secs": 100 },
                { "service": "worker", "instance": 0, "release": "r3", "state": "backoff", "pid": null,
                  "cpu_percent": null, "memory_bytes": null, "memory_max": 268_435_456,
                  "restarts": 4, "uptime_secs": null },
            ],
            "routes": [
                { "host": "example.com", "path": "/", "target": "web" },
                { "host": "example.com", "path": "/api/", "target": "web" },
            ],
            "backups": [
                { "name": "nightly", "last_success": "2026-12-02T02:00:00Z", "age_secs": 3600,
                  "last_drill": { "at": "2026-12-01T03:00:00Z", "ok": true }, "problem": null },
                { "name": "uploads", "last_success": null, "age_secs": null, "last_drill": null,
                  "problem": "s3://backups/shop: access denied" },
            ],
        }, {
            "name": "blog",
            "release": "r12",
            "maintenance": "restoring backup nightly-2026-12-01",
            "instances": [
                { "service": "web", "instance": 0, "release": "r12", "state": "ready", "pid": 2345,
                  "cpu_percent": 0.3, "memory_bytes": 48_000_000, "memory_max": 50_000_000,
                  "restarts": 0, "uptime_secs": 200_000 },
            ],
            "routes": [{ "host": "blog.example.com", "path": "/", "target": "web" }],
            "backups": [],
        }],
        "alerts": [
            { "alert": "p95_latency", "app": "shop", "subject": "example.com/", "severity": "critical",
              "state": "firing", "value": "1.2s", "threshold": "1s", "since": "2026-12-02T02:00:00Z" },
            { "alert": "error_rate", "app": "shop", "subject": "example.com/api/", "severity": "warning",
              "state": "pending", "value": "2.1%", "threshold": "2%", "since": "2026-12-02T02:10:00Z" },
            { "alert": "backup_age", "app": "blog", "subject": "nightly", "severity": "warning",
              "state": "resolved", "value": "1h", "threshold": "26h", "since": "2026-12-01T02:00:00Z" },
        ],
        "certificates": [
            { "app": "shop", "names": ["example.com"], "not_after": "2027-01-01T00:00:00Z",
              "days_left": 30, "error": null },
            { "app": "blog", "names": ["blog.example.com"], "not_after": "2026-12-14T00:00:00Z",
              "days_left": 12, "error": "renewal: ACME order failed: rate limited" },
        ],
        "deploys": [
            { "app": "shop", "kind": "deploy", "release": "r3", "result": "succeeded",
              "started": "2026-12-02T01:00:00Z", "duration_ms": 1234, "reason": null },
            { "app": "shop", "kind": "rollback", "release": "r2", "result": "rolled_back",
              "started": "2026-12-01T18:00:00Z", "duration_ms": 8_500, "reason": HOSTILE },
            { "app": "blog", "kind": "deploy", "release": "r12", "result": "succeeded",
              "started": "2026-11-30T09:00:00Z", "duration_ms": 42_000, "reason": null },
        ],
        "notifiers": [
            { "app": "shop", "channel": "slack (…/AbCd)", "ok": true, "last_error": null },
            { "app": "shop", "channel": "email (ops@example.com)", "ok": false,
              "last_error": "SMTP 535: authentication failed" },
        ],
    })
}

/// 1 h of 10 s points or 24 h of 5 min points, ending now, with a gap of 15 points.
fn series(app: &str, window: &str) -> Value {
    let (n, step) = if window == "24h" {
        (288, 300)
    } else {
        (360, 10)
    };
    let start = now() - (n - 1) * step;
    let wave = |i: u64, period: f64| (i as f64 / period).sin();
    let gap = 200..215;
    let make = |f: &dyn Fn(u64) -> f64| -> Vec<Value> {
        (0..n)
            .map(|i| {
                if gap.contains(&i) {
                    Value::Null
                } else {
                    json!((f(i) * 1000.0).round() / 1000.0)
                }
            })
            .collect()
    };
    json!({
        "app": app, "window": window, "start": start, "step_secs": step,
        "series": {
            "requests_per_sec": make(&|i| 12.0 + 5.0 * wave(i, 18.0) + 2.0 * wave(i, 5.0)),
            "error_rate": make(&|i| if (250..270).contains(&i) { 0.04 } else { 0.004 + 0.002 * wave(i, 9.0) }),
            "p50_ms": make(&|i| 14.0 + 3.0 * wave(i, 20.0)),
            "p95_ms": make(&|i| 60.0 + 20.0 * wave(i, 16.0)),
            "p99_ms": make(&|i| 140.0 + 50.0 * wave(i, 11.0)),
            "cpu_percent": make(&|i| 3.0 + 2.0 * wave(i, 25.0)),
            "memory_bytes": make(&|i| 60_000_000.0 + 4_000_000.0 * wave(i, 40.0)),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// The server: one thread per connection, `Connection: close`.

#[derive(Clone, Copy, PartialEq)]
enum Access {
    /// The dashboard's cookie is good: the API answers.
    Granted,
    /// No cookie: the API answers 401.
    Denied,
}

/// What the event stream does.
#[derive(Clone, Copy, PartialEq)]
enum Stream {
    /// Sends its events and stays open.
    Held,
    /// The first connection ends after its events, as when the daemon restarts.
    DroppedOnce,
}

struct Site {
    addr: SocketAddr,
    /// The request targets served so far.
    log: Arc<Mutex<Vec<String>>>,
}

impl Site {
    fn start(access: Access, stream: Stream) -> Site {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let log = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::clone(&log);
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                let served = Arc::clone(&served);
                std::thread::spawn(move || serve(connection, access, stream, &served));
            }
        });
        Site { addr, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many requests had exactly this target.
    fn requests(&self, target: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|t| *t == target)
            .count()
    }
}

fn serve(stream: TcpStream, access: Access, behaviour: Stream, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the connection"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let target = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let streams_before = {
        let mut log = log.lock().unwrap();
        let before = log
            .iter()
            .filter(|t| t.starts_with("/dashboard/api/stream"))
            .count();
        log.push(target.clone());
        before
    };
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_owned()
    };
    let mut stream = stream;
    let api = path.starts_with("/dashboard/api/");
    if api && access == Access::Denied {
        return respond(
            &mut stream,
            "401 Unauthorized",
            "application/json",
            r#"{"error":"no token"}"#,
        );
    }
    match path {
        "/dashboard" => respond(&mut stream, "200 OK", "text/html; charset=utf-8", INDEX),
        "/dashboard/app.js" => respond(
            &mut stream,
            "200 OK",
            "text/javascript; charset=utf-8",
            APP_JS,
        ),
        "/dashboard/style.css" => respond(&mut stream, "200 OK", "text/css; charset=utf-8", STYLE),
        "/dashboard/api/overview" => respond(
            &mut stream,
            "200 OK",
            "application/json",
            &overview(123).to_string(),
        ),
        "/dashboard/api/series" => {
            let body = series(&param("app"), &param("window")).to_string();
            respond(&mut stream, "200 OK", "application/json", &body)
        }
        "/dashboard/api/stream" => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\n\r\n";
            let events = format!(
                "retry: 1000\n\nevent: overview\ndata: {}\n\nevent: tick\ndata: {}\n\n",
                overview(7260),
                json!({ "t": now() }),
            );
            if stream.write_all(head.as_bytes()).is_err()
                || stream.write_all(events.as_bytes()).is_err()
            {
                return;
            }
            if behaviour == Stream::DroppedOnce && streams_before == 0 {
                return;
            }
            // Hold the stream open until the browser goes.
            let _ = stream.read(&mut [0; 1]);
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", "not found"),
    }
}

fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         content-security-policy: {CSP}\r\nx-content-type-options: nosniff\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}
