//! The dashboard on the admin listener: one page (assets embedded in the binary) and the JSON
//! and server-sent events it reads. Access takes the token in `STATE/dashboard.token` (made at
//! first start, 0600; `berth dashboard url` shows the URL): `GET /dashboard?token=T` trades it
//! for an HttpOnly, SameSite=Strict cookie, and every other dashboard request checks that
//! cookie. Nothing here shows a secret value: the data are names, states and figures.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::control::body::{ApiBody, ChannelBody, full};
use crate::core::Core;

const TOKEN_FILE: &str = "dashboard.token";
const COOKIE: &str = "berth_dashboard";
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// How often the event stream sends the overview.
const OVERVIEW_EVERY: Duration = Duration::from_secs(5);

const INDEX_HTML: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const STYLE_CSS: &str = include_str!("../assets/dashboard/style.css");

/// The token in `dir`, made on first use (32 random bytes, hex; mode 0600).
pub(crate) fn token(dir: &Path) -> io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(io::Error::other)?;
    let token = hex(&raw);
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(token)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without leaking where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(req: &http::Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(COOKIE)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
}

/// Answers a request under `/dashboard`, or None for other paths.
pub(crate) async fn answer(
    core: &Arc<Core>,
    req: &http::Request<Incoming>,
) -> Option<Response<ApiBody>> {
    let path = req.uri().path();
    if path != "/dashboard" && !path.starts_with("/dashboard/") {
        return None;
    }
    if req.method() != Method::GET {
        return Some(plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
    }
    let token = match token(core.dir.root()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "the dashboard token");
            return Some(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the dashboard token cannot be read\n",
            ));
        }
    };
    // The token in the URL, once: traded for the cookie, and the URL cleaned of it.
    if path == "/dashboard"
        && let Some(given) = req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token=").map(str::to_owned))
        })
    {
        if !same(&given, &token) {
            return Some(unauthorized(true));
        }
        let mut resp = Response::new(full(""));
        *resp.status_mut() = StatusCode::SEE_OTHER;
        let h = resp.headers_mut();
        h.insert(header::LOCATION, HeaderValue::from_static("/dashboard"));
        h.insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&format!(
                "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/dashboard"
            ))
            .expect("hex is a valid header value"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Some(resp);
    }
    let authorized = cookie_token(req).is_some_and(|c| same(&c, &token));
    if !authorized {
        return Some(unauthorized(path == "/dashboard"));
    }
    Some(match path {
        "/dashboard" | "/dashboard/" => asset(INDEX_HTML, "text/html; charset=utf-8"),
        "/dashboard/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "/dashboard/style.css" => asset(STYLE_CSS, "text/css; charset=utf-8"),
        "/dashboard/api/overview" => json_answer(&overview(core).await),
        "/dashboard/api/series" => {
            let q = req.uri().query().unwrap_or("");
            let get = |k: &str| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=').map(str::to_owned))
            };
            let window = match get("window").as_deref() {
                Some("24h") => Duration::from_secs(24 * 3600),
                _ => Duration::from_secs(3600),
            };
            match get("app") {
                Some(app) => json_answer(&core.series_json(&app, window)),
                None => plain(StatusCode::BAD_REQUEST, "app= is required\n"),
            }
        }
        "/dashboard/api/stream" => stream(core.clone()),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    })
}

fn secure(resp: &mut Response<ApiBody>) {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
}

fn asset(body: &'static str, kind: &'static str) -> Response<ApiBody> {
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(&mut resp);
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<ApiBody> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(&mut resp);
    resp
}

fn unauthorized(page: bool) -> Response<ApiBody> {
    if !page {
        return plain(
            StatusCode::UNAUTHORIZED,
            "open the URL `berth dashboard url` prints\n",
        );
    }
    let mut resp = Response::new(full(
        "<!doctype html><meta charset=utf-8><title>berth</title>\
         <p>This dashboard needs its token: open the URL that <code>berth dashboard url</code> prints.</p>",
    ));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(&mut resp);
    resp
}

fn json_answer(v: &Value) -> Response<ApiBody> {
    let mut resp = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(&mut resp);
    resp
}

/// `event: overview` every few seconds and `event: tick` when the history took new points,
/// until the client goes away or the daemon stops.
fn stream(core: Arc<Core>) -> Response<ApiBody> {
    let (tx, body) = ChannelBody::channel(8);
    let cancel = core.cancel.clone();
    tokio::spawn(async move {
        let mut ticks = core.history_ticks();
        let mut every = tokio::time::interval(OVERVIEW_EVERY);
        loop {
            let event = tokio::select! {
                _ = every.tick() => format!("event: overview\ndata: {}\n\n", overview(&core).await),
                t = ticks.changed() => match t {
                    Ok(()) => format!("event: tick\ndata: {{\"t\":{}}}\n\n", *ticks.borrow_and_update()),
                    Err(_) => break,
                },
                () = cancel.cancelled() => break,
            };
            if tx.send(Bytes::from(event)).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(&mut resp);
    resp
}

/// What the page shows, in one value (see the page's `app.js` for how each field is used).
async fn overview(core: &Arc<Core>) -> Value {
    let now = SystemTime::now();
    let status = core.status(None).await.ok();
    let cpu = core.cpu_percent_now();
    let mut apps = Vec::new();
    if let Some(status) = &status {
        for a in &status.apps {
            let (routes, limits) = core
                .with_running(&a.name, |r| {
                    let routes: Vec<Value> = r
                        .spec
                        .routes
                        .iter()
                        .map(|rt| {
                            json!({
                                "host": rt.host,
                                "path": rt.path,
                                "target": match &rt.target {
                                    spec::RouteTarget::Service(s) => s.clone(),
                                    spec::RouteTarget::Static { dir, .. } => format!("static {dir}"),
                                },
                            })
                        })
                        .collect();
                    let limits: std::collections::BTreeMap<String, Option<u64>> = r
                        .spec
                        .services
                        .iter()
                        .map(|(n, s)| (n.clone(), s.memory_max))
                        .collect();
                    (routes, limits)
                })
                .unwrap_or_default();
            apps.push(json!({
                "name": a.name,
                "release": a.release,
                "maintenance": a.maintenance,
                "instances": a.instances.iter().map(|i| json!({
                    "service": i.service,
                    "instance": i.instance,
                    "release": i.release,
                    "state": i.state,
                    "pid": i.pid,
                    "cpu_percent": cpu.get(&(a.name.clone(), i.service.clone(), i.instance)),
                    "memory_bytes": i.memory_bytes,
                    "memory_max": limits.get(&i.service).copied().flatten(),
                    "restarts": i.restarts,
                    "uptime_secs": i.uptime_secs,
                })).collect::<Vec<_>>(),
                "routes": routes,
                "backups": a.backups.iter().map(|b| json!({
                    "name": b.name,
                    "last_success": b.last_success,
                    "age_secs": b.last_success_age_secs,
                    "last_drill": b.last_drill.as_ref().map(|d| json!({"at": d.at, "ok": d.ok})),
                    "problem": b.last_failure,
                })).collect::<Vec<_>>(),
            }));
        }
    }
    let certificates: Vec<Value> = status
        .as_ref()
        .map(|s| {
            s.certificates
                .iter()
                .map(|c| {
                    json!({
                        "app": c.app,
                        "names": c.names,
                        "not_after": c.not_after,
                        "days_left": c.expires_in_days,
                        "error": c.last_error,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let deploys: Vec<Value> = core
        .db
        .deploys(None, 20)
        .await
        .unwrap_or_default()
        .iter()
        .map(crate::history::record)
        .map(|d| {
            json!({
                "app": d.app,
                "kind": d.kind,
                "release": d.release,
                "result": d.result,
                "started": d.started,
                "duration_ms": d.duration_ms,
                "reason": d.reason,
            })
        })
        .collect();
    json!({
        "daemon": {
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": now.duration_since(core.started_at).map_or(0, |d| d.as_secs()),
            "state_dir": core.dir.root().display().to_string(),
        },
        "apps": apps,
        "alerts": core.alerts_json(),
        "certificates": certificates,
        "deploys": deploys,
        "notifiers": core.notifiers_json(),
    })
}
