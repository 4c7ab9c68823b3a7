//! Responses berth generates itself: a status, a short plain body, and `x-berth-error` so an
//! operator can tell berth's failure from the app's. No internal detail reaches the client.

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{Body, full_body};
use crate::table::Maintenance;

pub(crate) const X_BERTH_ERROR: &str = "x-berth-error";

/// A failure the proxy answers on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// No route matches the host and path (404).
    NoRoute,
    /// The route's service has no instances (503).
    NoInstances,
    /// No instance accepted a connection (502).
    ConnectFailed,
    /// The instance did not start answering within the response timeout (504).
    Timeout,
    /// The instance broke the connection or spoke invalid HTTP (502).
    BadResponse,
    /// The request body exceeds the route's limit (413).
    BodyTooLarge,
    /// Static files are not available in this build (501).
    StaticUnavailable,
    /// The request is malformed (bad Content-Length) or its body broke off (400).
    BadRequest,
    /// The request has no `Host` (HTTP/1.1), more than one, an invalid one, or one that
    /// disagrees with its HTTP/2 `:authority` (400).
    BadHost,
    /// The client exceeded the route's rate-limit zone (429, with `Retry-After`).
    RateLimited,
    /// The app is under maintenance: the operator's, or a backup being restored (503, with
    /// `Retry-After`; the route's own page when it has one, see [`maintenance_response`]).
    Maintenance,
}

impl ProxyError {
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoInstances | ProxyError::Maintenance => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ConnectFailed | ProxyError::BadResponse => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::StaticUnavailable => StatusCode::NOT_IMPLEMENTED,
            ProxyError::BadRequest | ProxyError::BadHost => StatusCode::BAD_REQUEST,
            ProxyError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `x-berth-error` value.
    pub fn marker(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no route",
            ProxyError::NoInstances => "no instances",
            ProxyError::ConnectFailed => "upstream connect refused",
            ProxyError::Timeout => "upstream timeout",
            ProxyError::BadResponse => "upstream bad response",
            ProxyError::BodyTooLarge => "body too large",
            ProxyError::StaticUnavailable => "static files unavailable",
            ProxyError::BadRequest => "bad request",
            ProxyError::BadHost => "bad host",
            ProxyError::RateLimited => "rate-limited",
            ProxyError::Maintenance => "maintenance",
        }
    }

    fn body(self) -> &'static str {
        match self {
            ProxyError::NoRoute => "404 not found: no route for this host and path\n",
            ProxyError::NoInstances => "503 service unavailable: no instance is running\n",
            ProxyError::ConnectFailed => "502 bad gateway: the app did not accept the connection\n",
            ProxyError::Timeout => "504 gateway timeout: the app did not answer in time\n",
            ProxyError::BadResponse => {
                "502 bad gateway: the app closed the connection or answered badly\n"
            }
            ProxyError::BodyTooLarge => "413 payload too large\n",
            ProxyError::StaticUnavailable => {
                "501 not implemented: static files are not served by this build\n"
            }
            ProxyError::BadRequest => "400 bad request\n",
            ProxyError::BadHost => "400 bad request: missing, repeated or invalid Host\n",
            ProxyError::Maintenance => {
                "503 service unavailable: under maintenance, please retry shortly\n"
            }
            ProxyError::RateLimited => "429 too many requests: slow down and retry later\n",
        }
    }

    pub fn response(self) -> Response<Body> {
        let body = self.body();
        let mut resp = Response::new(full_body(body));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        h.insert(X_BERTH_ERROR, HeaderValue::from_static(self.marker()));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// [`ProxyError::Maintenance`] with the route's page (HTML) instead of the plain body.
pub(crate) fn maintenance_response(m: &Maintenance) -> Response<Body> {
    let mut resp = ProxyError::Maintenance.response();
    *resp.body_mut() = full_body(m.page.clone());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(m.page.len()));
    resp
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.marker())
    }
}

impl std::error::Error for ProxyError {}
