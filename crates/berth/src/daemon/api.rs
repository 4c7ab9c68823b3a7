//! The control API (HTTP/1.1 + JSON on the Unix socket) and the admin listener (/metrics).
//!
//! | method | path                        | answer                                  |
//! |--------|-----------------------------|-----------------------------------------|
//! | GET    | /v1/daemon                  | [`api::DaemonInfo`]                     |
//! | GET    | /v1/status[?app=A]          | [`api::Status`]                         |
//! | POST   | /v1/deploy[?wait=1]  (body: archive) | NDJSON stream of [`api::DeployEvent`] |
//! | POST   | /v1/deploy?dry_run=1 (body: archive) | [`api::Plan`]                  |
//! | POST   | /v1/apps/A/rollback[?to=R&wait=1] | NDJSON stream, as deploy         |
//! | GET    | /v1/apps/A/releases         | [`api::Releases`]                       |
//! | GET    | /v1/history[?app=A]         | [`api::History`]                        |
//! | GET    | /v1/apps/A/logs?service=&since_ms=&follow=1 | log lines, streamed     |
//! | GET    | /v1/metrics                 | Prometheus text                         |

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};

use super::Shared;
use super::body::{ApiBody, ChannelBody, full};
use super::rollout::{EVENT_BUFFER, Progress, Request};
use crate::api::ApiError;

/// Largest source archive accepted by `POST /v1/deploy`.
const MAX_ARCHIVE: usize = 1 << 30;

pub async fn serve_control(
    daemon: Shared,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    while let Some(stream) =
        accept_next(|| listener.accept(), shutdown.as_mut(), "control socket").await
    {
        let user = peer_user(&stream);
        let daemon = daemon.clone();
        let svc = service_fn(move |req| {
            let (daemon, user) = (daemon.clone(), user.clone());
            async move { Ok::<_, Infallible>(route(daemon, req, user).await) }
        });
        let conn =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "control connection ended");
            }
        });
    }
    // Long streams (logs --follow) must not hold the daemon up forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

/// The next accepted connection, or None once `shutdown` resolves. Accept errors (e.g. out of
/// file descriptors) are logged and the loop goes on.
async fn accept_next<S, A, F>(
    mut accept: impl FnMut() -> F,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
    what: &str,
) -> Option<S>
where
    F: Future<Output = std::io::Result<(S, A)>>,
{
    loop {
        tokio::select! {
            accepted = accept() => match accepted {
                Ok((stream, _)) => return Some(stream),
                Err(err) => tracing::warn!(error = %err, "accept on the {what}"),
            },
            () = &mut shutdown => return None,
        }
    }
}

/// The local user on the other end of the socket, for the deploy history.
fn peer_user(stream: &tokio::net::UnixStream) -> String {
    stream
        .peer_cred()
        .ok()
        .and_then(|c| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(c.uid()))
                .ok()
                .flatten()
        })
        .map_or_else(|| "unknown".to_owned(), |u| u.name)
}

async fn route(daemon: Shared, req: http::Request<Incoming>, user: String) -> Response<ApiBody> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["v1", "daemon"]) => json(StatusCode::OK, &daemon.info()),
        (&Method::GET, ["v1", "status"]) => match daemon.status(param(&query, "app")).await {
            Ok(status) => json(StatusCode::OK, &status),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"), None),
        },
        (&Method::POST, ["v1", "deploy"]) => deploy(daemon, req, user, &query).await,
        (&Method::POST, ["v1", "apps", app, "rollback"]) => {
            let to = param(&query, "to");
            match daemon.rollback_target(app, to.as_deref()).await {
                Ok(target) => {
                    let (tx, body) = ChannelBody::channel(EVENT_BUFFER);
                    let req = Request {
                        user,
                        wait: param(&query, "wait").is_some_and(|v| v == "1"),
                        env: None,
                    };
                    let progress = Progress::new(tx, daemon.clone());
                    tokio::spawn(
                        daemon
                            .clone()
                            .rollback((*app).to_owned(), target, req, progress),
                    );
                    ndjson(body)
                }
                Err((message, hint)) => error(
                    StatusCode::BAD_REQUEST,
                    message,
                    Some(hint).filter(|h| !h.is_empty()),
                ),
            }
        }
        (&Method::GET, ["v1", "apps", app, "releases"]) => match daemon.releases(app).await {
            Ok(Some(r)) => json(StatusCode::OK, &r),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                format!("no app named {app}"),
                Some("`berth status` lists the deployed apps".to_owned()),
            ),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"), None),
        },
        (&Method::GET, ["v1", "history"]) => match daemon.history(param(&query, "app")).await {
            Ok(h) => json(StatusCode::OK, &h),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"), None),
        },
        (&Method::GET, ["v1", "apps", app, "logs"]) => logs(&daemon, app, &query).await,
        (&Method::GET, ["v1", "metrics"]) => metrics(&daemon),
        (&Method::GET, ["v1", "apps", app, "secrets"]) => match daemon.list_secrets(app).await {
            Ok(list) => json(StatusCode::OK, &list),
            Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"), None),
        },
        (&Method::PUT, ["v1", "apps", app, "secrets", name]) => {
            let (app, name) = ((*app).to_owned(), (*name).to_owned());
            let value = match read_value(req).await {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            match daemon.set_secret(&app, &name, &value).await {
                Ok(replaced) => json(StatusCode::OK, &serde_json::json!({ "replaced": replaced })),
                Err((message, hint)) => error(StatusCode::BAD_REQUEST, message, hint),
            }
        }
        (&Method::DELETE, ["v1", "apps", app, "secrets", name]) => {
            match daemon.unset_secret(app, name).await {
                Ok(true) => json(StatusCode::OK, &serde_json::json!({ "removed": true })),
                Ok(false) => error(
                    StatusCode::NOT_FOUND,
                    format!("{app} has no secret {name}"),
                    None,
                ),
                Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"), None),
            }
        }
        (&Method::POST, ["v1", "apps", app, "secrets", "generate"]) => {
            let spec = daemon
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(*app)
                .map(|r| r.spec.clone());
            match spec {
                None => error(
                    StatusCode::BAD_REQUEST,
                    format!("{app} is not running, so berth does not know its [secrets] yet"),
                    Some(
                        "deploy it: missing generated secrets are created on every deploy"
                            .to_owned(),
                    ),
                ),
                Some(spec) => match daemon.ensure_secrets(&spec).await {
                    Ok(()) => daemon.list_secrets(app).await.map_or_else(
                        |err| error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"), None),
                        |list| json(StatusCode::OK, &list),
                    ),
                    Err(f) => error(StatusCode::BAD_REQUEST, f.reason, f.hint),
                },
            }
        }
        (&Method::POST, ["v1", "apps", app, "secrets", name, "rotate"]) => {
            let (app, name) = ((*app).to_owned(), (*name).to_owned());
            let value = match read_value(req).await {
                Ok(v) if v.is_empty() => None,
                Ok(v) => Some(v),
                Err(resp) => return resp,
            };
            if let Err((message, hint)) = daemon.rotate_secret(&app, &name, value).await {
                return error(StatusCode::BAD_REQUEST, message, hint);
            }
            // Restart the app's services with the new value, through a zero-downtime rollout.
            let (tx, body) = ChannelBody::channel(EVENT_BUFFER);
            let req = Request {
                user,
                wait: true,
                env: None,
            };
            let progress = Progress::new(tx, daemon.clone());
            tokio::spawn(daemon.clone().restart(app, req, progress));
            ndjson(body)
        }
        (&Method::GET, ["v1", "secrets", "key"]) => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(full(daemon.export_key()))
            .unwrap_or_else(|_| Response::new(full(""))),
        (&Method::PUT, ["v1", "secrets", "key"]) => {
            let force = param(&query, "force").is_some_and(|v| v == "1");
            let text = match read_value(req).await {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            match daemon.import_key(&text, force).await {
                Ok(()) => json(StatusCode::OK, &serde_json::json!({ "imported": true })),
                Err((message, hint)) => error(StatusCode::BAD_REQUEST, message, hint),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such API endpoint: {} {path}", req.method()),
            None,
        ),
    }
}

async fn deploy(
    daemon: Shared,
    req: http::Request<Incoming>,
    user: String,
    query: &str,
) -> Response<ApiBody> {
    let archive = match Limited::new(req.into_body(), MAX_ARCHIVE).collect().await {
        Ok(body) => body.to_bytes(),
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("could not receive the source archive: {err}"),
                Some(format!(
                    "archives are limited to {} MiB; add large files to .berthignore",
                    MAX_ARCHIVE >> 20
                )),
            );
        }
    };
    if param(query, "dry_run").is_some_and(|v| v == "1") {
        return match daemon.plan(archive, param(query, "env")).await {
            Ok(plan) => json(StatusCode::OK, &plan),
            Err(f) => error(StatusCode::BAD_REQUEST, daemon.redact(&f.reason), f.hint),
        };
    }
    let (tx, body) = ChannelBody::channel(EVENT_BUFFER);
    let req = Request {
        user,
        wait: param(query, "wait").is_some_and(|v| v == "1"),
        env: param(query, "env"),
    };
    let progress = Progress::new(tx, daemon.clone());
    // The deploy runs on its own task: a client that goes away does not cut it short.
    tokio::spawn(daemon.deploy(archive, req, progress));
    ndjson(body)
}

fn ndjson(body: ApiBody) -> Response<ApiBody> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .unwrap_or_else(|_| Response::new(full("")))
}

async fn logs(daemon: &Shared, app: &str, query: &str) -> Response<ApiBody> {
    let known = daemon.with_store({
        let app = app.to_owned();
        move |s| s.app(&app)
    });
    match known.await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no app named {app}"),
                Some("`berth status` lists the deployed apps".to_owned()),
            );
        }
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}"), None),
    }
    let service = param(query, "service");
    let since = match param(query, "since_ms").map(|ms| ms.parse::<u64>()) {
        None => None,
        Some(Ok(ms)) => SystemTime::now().checked_sub(Duration::from_millis(ms)),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "since_ms must be a number of milliseconds".to_owned(),
                None,
            );
        }
    };
    let follow = param(query, "follow").is_some_and(|v| v == "1");
    let dir = daemon.log_dir(app);
    let (tx, body) = ChannelBody::channel(64);
    // The app's own lines are stored as written; shown redacted unless asked otherwise.
    let redactor = if param(query, "redact").is_some_and(|v| v == "0") {
        None
    } else {
        Some(daemon.redactor())
    };
    tokio::spawn(super::logs::stream(
        dir, service, since, follow, redactor, tx,
    ));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .unwrap_or_else(|_| Response::new(full("")))
}

fn metrics(daemon: &Shared) -> Response<ApiBody> {
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(full(
            daemon.proxy().metrics_text() + &daemon.certs.metrics_text(),
        ))
        .unwrap_or_else(|_| Response::new(full("")))
}

/// The admin listener: `GET /metrics` (Prometheus) and `GET /health` for the daemon itself.
pub async fn serve_admin(
    daemon: Shared,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    while let Some(stream) =
        accept_next(|| listener.accept(), shutdown.as_mut(), "admin listener").await
    {
        let daemon = daemon.clone();
        let svc = service_fn(move |req: http::Request<Incoming>| {
            let daemon = daemon.clone();
            async move {
                Ok::<_, Infallible>(match (req.method(), req.uri().path()) {
                    (&Method::GET, "/metrics") => metrics(&daemon),
                    (&Method::GET, "/health") => Response::new(full("ok\n")),
                    _ => error(StatusCode::NOT_FOUND, "not found".to_owned(), None),
                })
            }
        });
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A secret value or key from a request body (at most 64 KiB, UTF-8, one trailing newline
/// dropped). Never logged.
async fn read_value(req: http::Request<Incoming>) -> Result<String, Response<ApiBody>> {
    let bytes = Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "the value is larger than 64 KiB".to_owned(),
                None,
            )
        })?
        .to_bytes();
    let mut text = String::from_utf8(bytes.to_vec()).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            "the value is not UTF-8 text".to_owned(),
            None,
        )
    })?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| v.to_owned())
    })
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<ApiBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn error(status: StatusCode, message: String, hint: Option<String>) -> Response<ApiBody> {
    json(
        status,
        &ApiError {
            error: message,
            hint,
        },
    )
}
