//! The HTTP channels' client: hyper-util's pooled client over hyper-rustls (ring, the Mozilla
//! roots plus any extra ones), HTTP/1.1, `http://` allowed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use url::Url;

use super::Failure;
use super::channel::decode;

pub(crate) type Client = Legacy<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The most of an error answer's body kept for the error message.
const BODY_EXCERPT: usize = 200;

pub(crate) fn client(extra_roots: &[CertificateDer<'static>]) -> Result<Client, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        roots.add(root.clone())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Legacy::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// Where an HTTP channel posts: the URL without its user and password, which become a basic
/// `Authorization` header.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    uri: Uri,
    authorization: Option<HeaderValue>,
}

impl Target {
    pub(crate) fn parse(raw: &str) -> Result<Target, String> {
        let mut url = Url::parse(raw).map_err(|err| format!("not a URL ({err})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the URL must start with https:// (or http://), not {}://",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        let authorization = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => {
                use base64::Engine;
                let pair = format!("{}:{}", decode(user), decode(password.unwrap_or_default()));
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
                    .map_err(|_| "the URL's user or password cannot be sent".to_owned())?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let uri = Uri::try_from(url.as_str()).map_err(|err| format!("not a URL ({err})"))?;
        Ok(Target { uri, authorization })
    }
}

/// One POST of `body`; ok on a 2xx answer. A failure's text names the status and the start
/// of the answer, or the connection's error; 4xx answers other than 408 and 429 are not
/// worth retrying.
pub(crate) async fn post(
    client: &Client,
    target: &Target,
    content_type: &str,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
) -> Result<(), Failure> {
    let mut request = Request::post(target.uri.clone())
        .header(CONTENT_TYPE, content_type)
        .header(USER_AGENT, concat!("berth/", env!("CARGO_PKG_VERSION")));
    if let Some(authorization) = &target.authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(body))
        .map_err(|err| Failure::permanent(format!("build the request: {err}")))?;
    let response = client.request(request).await.map_err(|err| Failure {
        reason: super::describe(&err),
        retry: !super::refused_by_tls(&err),
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let excerpt = excerpt(response.into_body()).await;
    let reason = if excerpt.is_empty() {
        format!("answered {status}")
    } else {
        format!("answered {status}: {excerpt}")
    };
    let retry = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
    Err(Failure { reason, retry })
}

/// The start of an answer's body, on one line.
async fn excerpt(mut body: hyper::body::Incoming) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_EXCERPT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(BODY_EXCERPT).collect()
}

/// An ntfy `Title` header: as is when it is ASCII, else RFC 2047 encoded (which ntfy decodes).
pub(crate) fn title_header(title: &str) -> HeaderValue {
    let ascii = title.chars().all(|c| c.is_ascii() && !c.is_ascii_control());
    let value = if ascii {
        title.to_owned()
    } else {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(title);
        format!("=?UTF-8?B?{encoded}?=")
    };
    HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("berth"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_password_become_basic_auth() {
        let target = Target::parse("https://alice:p%40ss@ntfy.example.com/topic").unwrap();
        assert_eq!(target.uri.to_string(), "https://ntfy.example.com/topic");
        // base64("alice:p@ss")
        assert_eq!(target.authorization.unwrap(), "Basic YWxpY2U6cEBzcw==");
        assert!(
            Target::parse("https://hooks.slack.com/x")
                .unwrap()
                .authorization
                .is_none()
        );
        assert!(Target::parse("mailto:ops@example.com").is_err());
    }

    #[test]
    fn titles_outside_ascii_are_encoded() {
        assert_eq!(title_header("[FIRING] shop: disk"), "[FIRING] shop: disk");
        assert_eq!(title_header("Spät"), "=?UTF-8?B?U3DDpHQ=?=");
    }
}
