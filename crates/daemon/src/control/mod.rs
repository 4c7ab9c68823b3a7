//! The control API (HTTP/1.1 + JSON on the Unix socket; the endpoints are listed in the `api`
//! crate) and the admin listener (`/metrics`, `/health`).
//!
//! Each handler parses its typed query with `api::parse`, calls the core, and answers JSON, or
//! a [`Refusal`] as an [`api::ApiError`]: 404 for what does not exist, 400 for bad input, 500
//! for the daemon's own failures.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api::{
    AppQuery, BackupQuery, BackupStatus, BackupTrigger, DeployQuery, ImportKeyQuery, LogsQuery,
    RollbackQuery, UpgradeQuery,
};
use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};

use crate::backups::Events;
use crate::core::Core;
use crate::refusal::{Refusal, RefusalKind};
use crate::rollout::{EVENT_BUFFER, Progress, Request, Source};
use body::{ApiBody, ChannelBody, full};

pub(crate) mod body;
mod logs;

/// Largest source archive accepted by `POST /v1/deploy`.
const MAX_ARCHIVE: usize = 1 << 30;
/// Largest secret value or key accepted.
const MAX_VALUE: usize = 64 * 1024;
/// How long the connections accepted before a stop have to finish on their own.
const ANSWER_GRACE: Duration = Duration::from_secs(1);
/// How long open streams (`logs --follow`) may hold up shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type Answer = Result<Response<ApiBody>, Refusal>;

pub(crate) async fn serve_control(
    core: Arc<Core>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = tokio_util::task::TaskTracker::new();
    tokio::pin!(shutdown);
    while let Some(stream) =
        accept_next(|| listener.accept(), shutdown.as_mut(), "control socket").await
    {
        let user = peer_user(&stream);
        let core = core.clone();
        let svc = service_fn(move |req| {
            let (core, user) = (core.clone(), user.clone());
            async move {
                let answer = route(core, req, user).await;
                Ok::<_, Infallible>(answer.unwrap_or_else(refused))
            }
        });
        let conn =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "control connection ended");
            }
        });
    }
    // A command whose connection was accepted just before the stop (an upgrade's hand-over)
    // is answered here: its request may not be read yet, and hyper's graceful shutdown would
    // close such a connection unanswered. Streams (`logs --follow`) are ended after that.
    connections.close();
    if tokio::time::timeout(ANSWER_GRACE, connections.wait())
        .await
        .is_err()
    {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    }
}

/// The admin listener: `GET /metrics` (Prometheus) and `GET /health` for the daemon itself.
pub(crate) async fn serve_admin(
    core: Arc<Core>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    while let Some(stream) =
        accept_next(|| listener.accept(), shutdown.as_mut(), "admin listener").await
    {
        let core = core.clone();
        let svc = service_fn(move |req: http::Request<Incoming>| {
            let core = core.clone();
            async move {
                if let Some(page) = crate::dashboard::answer(&core, &req).await {
                    return Ok::<_, Infallible>(page);
                }
                Ok::<_, Infallible>(match (req.method(), req.uri().path()) {
                    (&Method::GET, "/metrics") => metrics(&core),
                    (&Method::GET, "/health") => Response::new(full("ok\n")),
                    _ => refused(Refusal::not_found("not found")),
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

/// Hand the daemon over to `binary` (the run loop does it; this waits for the outcome).
async fn upgrade(
    core: &Core,
    binary: Option<std::path::PathBuf>,
) -> Result<api::Upgraded, Refusal> {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let request = crate::upgrade::UpgradeRequest {
        binary,
        reply: Some(reply),
        asked: std::time::Instant::now(),
    };
    let gone = || Refusal::from(anyhow::anyhow!("the daemon is stopping"));
    core.upgrades.send(request).await.map_err(|_| gone())?;
    outcome.await.map_err(|_| gone())?
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

async fn route(core: Arc<Core>, req: http::Request<Incoming>, user: String) -> Answer {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let query = query.as_deref();
    let segments = api::segments(&path)
        .ok_or_else(|| Refusal::bad_input(format!("the path {path} is not UTF-8")))?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["v1", "daemon"]) => Ok(json(&core.info())),
        (&Method::POST, ["v1", "upgrade"]) => {
            let q: UpgradeQuery = parse(query)?;
            Ok(json(&upgrade(&core, q.binary.map(Into::into)).await?))
        }
        (&Method::GET, ["v1", "status"]) => {
            let q: AppQuery = parse(query)?;
            Ok(json(&core.status(q.app.as_deref()).await?))
        }
        (&Method::POST, ["v1", "deploy"]) => deploy(core, req, user, parse(query)?).await,
        (&Method::POST, ["v1", "apps", app, "rollback"]) => {
            let q: RollbackQuery = parse(query)?;
            let release = core.rollback_target(app, q.to.as_deref()).await?;
            let source = Source::Kept {
                app: (*app).to_owned(),
                release,
            };
            Ok(rollout(&core, source, Request { user, wait: q.wait }))
        }
        (&Method::GET, ["v1", "apps", app, "releases"]) => match core.releases(app).await? {
            Some(r) => Ok(json(&r)),
            None => Err(Refusal::no_app(app)),
        },
        (&Method::GET, ["v1", "history"]) => {
            let q: AppQuery = parse(query)?;
            Ok(json(&core.history(q.app.as_deref()).await?))
        }
        (&Method::GET, ["v1", "apps", app, "logs"]) => {
            let q: LogsQuery = parse(query)?;
            logs(&core, app, q).await
        }
        (&Method::GET, ["v1", "metrics"]) => Ok(metrics(&core)),
        (&Method::GET, ["v1", "apps", app, "secrets"]) => Ok(json(&core.list_secrets(app).await?)),
        (&Method::PUT, ["v1", "apps", app, "secrets", name]) => {
            let (app, name) = ((*app).to_owned(), (*name).to_owned());
            let q: api::SetSecretQuery = parse(query)?;
            let value = read_value(req).await?;
            Ok(json(&core.set_secret(&app, &name, &value, q.new).await?))
        }
        (&Method::DELETE, ["v1", "apps", app, "secrets", name]) => {
            if !core.unset_secret(app, name).await? {
                return Err(Refusal::not_found(format!("{app} has no secret {name}")));
            }
            Ok(json(&api::SecretRemoved { removed: true }))
        }
        (&Method::POST, ["v1", "apps", app, "secrets", "generate"]) => {
            core.generate_secrets(app).await?;
            Ok(json(&core.list_secrets(app).await?))
        }
        (&Method::POST, ["v1", "apps", app, "secrets", name, "rotate"]) => {
            let (app, name) = ((*app).to_owned(), (*name).to_owned());
            let value = Some(read_value(req).await?).filter(|v| !v.is_empty());
            core.rotate_secret(&app, &name, value).await?;
            // Restart the app's services with the new value, through a zero-downtime rollout.
            Ok(rollout(
                &core,
                Source::Relink { app },
                Request { user, wait: true },
            ))
        }
        (&Method::PUT, ["v1", "apps", app, "maintenance"]) => {
            let app = (*app).to_owned();
            let message = read_value(req).await?;
            Ok(json(&core.maintenance_mode(&app, Some(message)).await?))
        }
        (&Method::DELETE, ["v1", "apps", app, "maintenance"]) => {
            Ok(json(&core.maintenance_mode(app, None).await?))
        }
        (&Method::POST, ["v1", "check", "routes"]) => {
            let check: api::RouteCheck = read_json(req).await?;
            let conflicts = core.route_conflicts(&check.app, &check.routes);
            Ok(json(&api::RouteConflicts { conflicts }))
        }
        (&Method::GET, ["v1", "alerts"]) => Ok(json(&core.alert_list())),
        (&Method::GET, ["v1", "health"]) => {
            let q: AppQuery = parse(query)?;
            if let Some(app) = &q.app {
                core.known_app(app).await?;
            }
            Ok(json(&core.health(q.app.as_deref()).await?))
        }
        (&Method::POST, ["v1", "apps", app, "notify", "test"]) => {
            Ok(json(&core.notify_test(app).await?))
        }
        (&Method::GET, ["v1", "dashboard"]) => Ok(json(&dashboard_url(&core)?)),
        (&Method::GET, ["v1", "apps", app, "backups"]) => Ok(json(&core.list_backups(app).await?)),
        (&Method::POST, ["v1", "apps", app, "backups", action]) => {
            let q: BackupQuery = parse(query)?;
            backups(core, app, action, q, req).await
        }
        (&Method::GET, ["v1", "backups", "key"]) => {
            let keys = backup::Keys::load_or_create(core.dir.root())
                .map_err(|e| Refusal::from(anyhow::anyhow!("the backup key: {e}")))?;
            let key = keys.export().map_err(Refusal::not_found)?;
            Ok(text("text/plain", full(key)))
        }
        (&Method::GET, ["v1", "secrets", "key"]) => Ok(text("text/plain", full(core.export_key()))),
        (&Method::PUT, ["v1", "secrets", "key"]) => {
            let q: ImportKeyQuery = parse(query)?;
            let key = read_value(req).await?;
            core.import_key(&key, q.force).await?;
            Ok(json(&api::KeyImported { imported: true }))
        }
        _ => Err(Refusal::not_found(format!(
            "no such API endpoint: {method} {path}"
        ))),
    }
}

async fn deploy(
    core: Arc<Core>,
    req: http::Request<Incoming>,
    user: String,
    q: DeployQuery,
) -> Answer {
    let archive = Limited::new(req.into_body(), MAX_ARCHIVE)
        .collect()
        .await
        .map_err(|err| {
            Refusal::bad_input(format!("could not receive the source archive: {err}")).hint(
                format!(
                    "archives are limited to {} MiB; add large files to .berthignore",
                    MAX_ARCHIVE >> 20
                ),
            )
        })?
        .to_bytes();
    if q.dry_run {
        return match core.plan(archive, q.env).await {
            Ok(plan) => Ok(json(&plan)),
            Err(f) => Err(Refusal {
                kind: RefusalKind::BadInput,
                message: core.redact(&f.reason),
                hint: f.hint,
            }),
        };
    }
    let source = Source::Upload {
        archive,
        env: q.env,
    };
    Ok(rollout(&core, source, Request { user, wait: q.wait }))
}

/// `POST /v1/apps/APP/backups/{run,verify,restore}`: bad input is refused at once; the work
/// runs on its own task (a client that goes away does not cut a restore short) and streams
/// [`api::BackupEvent`]s as NDJSON. The body may hold the backup identity (verify, restore).
async fn backups(
    core: Arc<Core>,
    app: &str,
    action: &str,
    q: BackupQuery,
    req: http::Request<Incoming>,
) -> Answer {
    let identity = Some(read_value(req).await?).filter(|v| !v.trim().is_empty());
    // The app, the definition and its target are checked before anything starts.
    core.plan_backup(app, q.name.as_deref())?;
    if action == "restore" && q.dry_run {
        return Ok(json(&core.restore_plan(app, &q).await?));
    }
    if !matches!(action, "run" | "verify" | "restore") {
        return Err(Refusal::not_found(format!(
            "no such backup action {action}: run, verify or restore"
        )));
    }
    let (tx, body) = ChannelBody::channel(EVENT_BUFFER);
    let events = Events::to(tx, core.redactor.clone());
    let (app, action) = (app.to_owned(), action.to_owned());
    let tasks = core.tasks.clone();
    tasks.spawn(async move {
        let outcome = match action.as_str() {
            "run" => core
                .run_backup(&app, q.name.as_deref(), BackupTrigger::Manual, &events)
                .await
                .map(|(record, problem)| {
                    (
                        record.status == BackupStatus::Ok && problem.is_none(),
                        record,
                        problem,
                    )
                }),
            "verify" => core
                .verify_backup(&app, &q, identity.as_deref(), &events)
                .await
                .map(|record| {
                    let problem = match &record.drill {
                        Some(d) if d.ok => None,
                        Some(d) => d.problem.clone(),
                        None => Some("no drill ran".to_owned()),
                    };
                    (problem.is_none(), record, problem)
                }),
            _ => core
                .restore_backup(&app, &q, identity.as_deref(), &events)
                .await
                .map(|record| (true, record, None)),
        };
        match outcome {
            Ok((ok, record, problem)) => {
                let error = problem.or_else(|| {
                    (record.status == BackupStatus::Failed).then(|| {
                        format!(
                            "backup {} failed at {}: {}",
                            record.id,
                            record.stage.as_deref().unwrap_or("?"),
                            record.error.as_deref().unwrap_or("")
                        )
                    })
                });
                events.done(ok, Some(record), error, None).await;
            }
            Err(refusal) => {
                events
                    .done(
                        false,
                        None,
                        Some(core.redact(&refusal.message)),
                        refusal.hint,
                    )
                    .await
            }
        }
    });
    Ok(text("application/x-ndjson", body))
}

/// `berth dashboard url`: the admin listener's address with the token.
fn dashboard_url(core: &Core) -> Result<api::DashboardUrl, Refusal> {
    let Some(admin) = core.addrs.admin else {
        return Err(Refusal::bad_input("the daemon has no admin listener, which serves the dashboard")
            .hint("start it with `berth serve --admin 127.0.0.1:9100` (loopback: reach it over an SSH tunnel)"));
    };
    let token = crate::dashboard::token(core.dir.root())
        .map_err(|e| Refusal::from(anyhow::anyhow!("the dashboard token: {e}")))?;
    Ok(api::DashboardUrl {
        url: format!("http://{admin}/dashboard?token={token}"),
    })
}

/// Start a rollout on its own task (a client that goes away does not cut it short) and
/// stream its progress as NDJSON.
fn rollout(core: &Arc<Core>, source: Source, req: Request) -> Response<ApiBody> {
    let (tx, body) = ChannelBody::channel(EVENT_BUFFER);
    let progress = Progress::new(tx, core.redactor.clone());
    core.tasks
        .spawn(core.clone().rollout(source, req, progress));
    text("application/x-ndjson", body)
}

async fn logs(core: &Arc<Core>, app: &str, q: LogsQuery) -> Answer {
    core.known_app(app).await?;
    let since = q
        .since_ms
        .and_then(|ms| SystemTime::now().checked_sub(Duration::from_millis(ms)));
    let (tx, body) = ChannelBody::channel(64);
    // The app's own lines are stored as written; shown redacted unless asked otherwise.
    let redactor = q.redact.then(|| core.redactor.load_full());
    tokio::spawn(logs::stream(
        core.dir.app_logs(app),
        q.service,
        since,
        q.follow,
        redactor,
        tx,
    ));
    Ok(text("text/plain; charset=utf-8", body))
}

fn metrics(core: &Core) -> Response<ApiBody> {
    let mut body = String::with_capacity(8192);
    // Writing into a String cannot fail, and the collectors report no error of their own.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut body, &core.metrics);
    text("text/plain; version=0.0.4; charset=utf-8", full(body))
}

/// A secret value or key from a request body (at most 64 KiB, UTF-8, one trailing newline
/// dropped). Never logged.
async fn read_value(req: http::Request<Incoming>) -> Result<String, Refusal> {
    let bytes = Limited::new(req.into_body(), MAX_VALUE)
        .collect()
        .await
        .map_err(|_| Refusal::bad_input("the value is larger than 64 KiB"))?
        .to_bytes();
    let mut text = String::from_utf8(bytes.to_vec())
        .map_err(|_| Refusal::bad_input("the value is not UTF-8 text"))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// A small JSON request body (at most 1 MiB).
async fn read_json<T: serde::de::DeserializeOwned>(
    req: http::Request<Incoming>,
) -> Result<T, Refusal> {
    let bytes = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|_| Refusal::bad_input("the request body is larger than 1 MiB"))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| Refusal::bad_input(format!("bad request body: {e}")))
}

fn parse<Q: for<'de> serde::Deserialize<'de>>(query: Option<&str>) -> Result<Q, Refusal> {
    api::parse(query).map_err(Refusal::bad_input)
}

fn json<T: serde::Serialize>(value: &T) -> Response<ApiBody> {
    with_status(StatusCode::OK, value)
}

fn with_status<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<ApiBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn text(content_type: &'static str, body: ApiBody) -> Response<ApiBody> {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn refused(r: Refusal) -> Response<ApiBody> {
    let status = match r.kind {
        RefusalKind::NotFound => StatusCode::NOT_FOUND,
        RefusalKind::BadInput => StatusCode::BAD_REQUEST,
        RefusalKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    with_status(
        status,
        &api::ApiError {
            error: r.message,
            hint: r.hint,
        },
    )
}
