//! One request: route it, answer it (forwarded by `relay`, a static file, a redirect, an ACME
//! challenge, or one of berth's own errors), and hand its response to the client with the
//! `Record` that accounts for it.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::body::{Body, empty_body, full_body};
use crate::clientip::client_ip;
use crate::compress;
use crate::conn::ConnShared;
use crate::error::{ProxyError, maintenance_response};
use crate::forward::{self, X_REQUEST_ID};
use crate::host;
use crate::proxy::Proxy;
use crate::ratelimit::retry_after_secs;
use crate::record::{Record, Tracked};
use crate::table::{Entry, Target};

type Result<T> = std::result::Result<T, ProxyError>;

impl Proxy {
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnShared>,
    ) -> Response<Tracked> {
        let start = Instant::now();
        let h1 = req.version() < http::Version::HTTP_2;
        if !h1 {
            conn.saw_h2();
        }
        let table = self.table();
        // The host the client asked for (or a 400: none, several, invalid).
        let (host, bad_host) = match host::request_host(&req) {
            Ok(host) => (host, None),
            Err(err) => (None, Some(err)),
        };
        // Set toward the instance by `forward`, after the hop-by-hop headers are gone.
        let request_id = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if forward::acceptable_request_id(v) => v.clone(),
            _ => self.ids.next(),
        };
        let mut record = Box::new(self.record(
            &conn,
            start,
            request_id.clone(),
            req.method().clone(),
            req.uri().clone(),
        ));
        let path = req.uri().path();
        let entry = match bad_host {
            None => table.lookup(host.as_ref().and_then(|h| h.to_str().ok()), path),
            Some(_) => None,
        };
        let on_http = conn.proto == "http";
        let challenge = on_http && tls::Http01Challenges::is_challenge_path(path);
        let key_authorization = match (&self.config.http01, challenge) {
            (Some(pending), true) => pending.response(path),
            _ => None,
        };
        if let Some(entry) = entry {
            record.metrics = Some(entry.metrics.clone());
            record.route = Some(entry.label.clone());
        }
        let mut retry_after = None;
        let result = match (bad_host, key_authorization, entry) {
            (Some(err), _, _) => Err(err),
            (None, Some(key_authorization), _) => Ok(acme_answer(key_authorization)),
            (None, None, None) => Err(ProxyError::NoRoute),
            (None, None, Some(entry)) => match self.config.https_port {
                Some(port)
                    if on_http
                        && !challenge
                        && entry.route.https_redirect
                        && self.has_certificate(host.as_ref()) =>
                {
                    self.metrics.global.https_redirects.fetch_add(1, Relaxed);
                    https_redirect(host.as_ref(), req.uri(), port)
                }
                _ if entry.route.maintenance.is_some() => {
                    retry_after = entry
                        .route
                        .maintenance
                        .as_ref()
                        .map(|m| m.retry_after.into());
                    Err(ProxyError::Maintenance)
                }
                _ => {
                    retry_after = rate_limited(entry, &conn, req.headers());
                    if retry_after.is_some() {
                        Err(ProxyError::RateLimited)
                    } else {
                        self.serve_route(entry, req, &conn, &mut record, host.as_ref())
                            .await
                    }
                }
            },
        };
        record.host = host;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => {
                record.error = Some(err.marker());
                match entry.and_then(|e| e.route.maintenance.as_deref()) {
                    Some(m) if err == ProxyError::Maintenance => maintenance_response(m),
                    _ => err.response(),
                }
            }
        };
        record.status = resp.status().as_u16();
        if record.method == Method::HEAD && !resp.body().is_end_stream() {
            // A response to HEAD has no content (RFC 9110 section 9.3.2), only the headers a GET
            // would get. hyper's HTTP/1 server leaves a body out on its own; its HTTP/2 server
            // does not know the method and would send HEADERS without END_STREAM and then the
            // body as DATA, which clients reject with PROTOCOL_ERROR. So no answer to HEAD,
            // berth's own or an instance's, leaves here with a body; the length a GET would
            // get (which hyper derives from the body) stays.
            if let Some(len) = resp.body().size_hint().exact() {
                resp.headers_mut()
                    .entry(header::CONTENT_LENGTH)
                    .or_insert_with(|| HeaderValue::from(len));
            }
            *resp.body_mut() = empty_body();
            // Whatever the body would have read is unread: its connection is not reused.
            record.pooled = None;
        }
        let headers = resp.headers_mut();
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        let policy = entry.map(|e| &*e.route.headers);
        // hyper closes the connection after a response that says so; the client's next
        // request goes to a new connection (and, on an upgrade, to the next daemon). This is
        // how a closing HTTP/1 connection ends without a race: it is never closed while the
        // client may be sending on it.
        let close = h1 && conn.closing();
        let https = conn.proto == "https";
        berths_headers(headers, record.status, policy, https, request_id, close);
        resp.map(|inner| Tracked {
            inner,
            record: Some(record),
        })
    }

    /// Whether the HTTPS listener has a certificate for the request's host.
    fn has_certificate(&self, host: Option<&HeaderValue>) -> bool {
        self.has_certificate_for(host.and_then(|h| h.to_str().ok()))
    }

    /// [`Proxy::has_certificate`] for a host as text.
    pub(crate) fn has_certificate_for(&self, host: Option<&str>) -> bool {
        let Some(store) = &self.config.certs else {
            return false;
        };
        host.and_then(|h| h.parse::<http::uri::Authority>().ok())
            .is_some_and(|a| store.lookup(a.host()).is_some())
    }

    /// The route's answer: forwarded to an instance (compressed when the client accepts it),
    /// or a static file (whose representation `files` chooses, for HEAD and GET alike).
    async fn serve_route(
        &self,
        entry: &Entry,
        req: Request<Incoming>,
        conn: &ConnShared,
        record: &mut Record,
        host: Option<&HeaderValue>,
    ) -> Result<Response<Body>> {
        match &entry.route.target {
            Target::Service(pool) => {
                let accept_encoding = req.headers().get(header::ACCEPT_ENCODING).cloned();
                let resp = self.forward(pool, entry, req, conn, record, host).await;
                resp.map(|r| compress::maybe_compress(accept_encoding.as_ref(), r))
            }
            Target::Static { .. } => {
                let (parts, _body) = req.into_parts();
                let rel = rel_path(parts.uri.path(), entry.strip_len);
                match &entry.files {
                    Some(files) => Ok(files.serve(&rel, &parts).await),
                    None => Err(ProxyError::StaticUnavailable),
                }
            }
        }
    }
}

/// What berth sets on every answer, after the answer's own headers: the route's security
/// headers (`policy`; not on 1xx), `Server: berth` (never the upstream's name and version),
/// `Connection: close` when the connection closes after it, and the request's id.
pub(crate) fn berths_headers(
    headers: &mut http::HeaderMap,
    status: u16,
    policy: Option<&crate::headers::HeaderPolicy>,
    https: bool,
    request_id: HeaderValue,
    close: bool,
) {
    if let Some(policy) = policy
        && status >= 200
    {
        policy.apply(headers, https);
    }
    headers.insert(header::SERVER, HeaderValue::from_static("berth"));
    if close && status >= 200 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(X_REQUEST_ID.clone(), request_id);
}

/// `Retry-After` seconds when the route's rate-limit zone has no token for the client.
fn rate_limited(entry: &Entry, conn: &ConnShared, headers: &http::HeaderMap) -> Option<u64> {
    let zone = entry.zone.as_ref()?;
    let ip = client_ip(conn.client.ip, headers, &entry.route.trusted_proxies);
    zone.check(ip).err().map(retry_after_secs)
}

/// `200 text/plain` with the key authorization of an ACME HTTP-01 challenge.
fn acme_answer(key_authorization: String) -> Response<Body> {
    let mut resp = Response::new(full_body(key_authorization));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// `308` to the same host, path and query on HTTPS (port `https_port`, left out when 443).
fn https_redirect(
    host: Option<&HeaderValue>,
    uri: &Uri,
    https_port: u16,
) -> Result<Response<Body>> {
    let authority = host
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .ok_or(ProxyError::BadRequest)?;
    let name = authority.host();
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = HeaderValue::from_str(&format!("https://{name}{port}{target}"))
        .map_err(|_| ProxyError::BadRequest)?;
    let mut resp = Response::new(empty_body());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(resp)
}

/// The path a static route serves: the request path after prefix handling, starting with `/`.
fn rel_path(path: &str, strip_len: usize) -> std::borrow::Cow<'_, str> {
    let rest = path.get(strip_len..).unwrap_or("");
    if rest.starts_with('/') {
        rest.into()
    } else {
        format!("/{rest}").into()
    }
}
