//! The host a request is for, or why it has none berth can believe.
//!
//! RFC 9112 section 3.2: an HTTP/1.1 request without `Host`, with more than one, or with an
//! invalid one is answered 400. The authority of an absolute-form target (HTTP/1.1) or of
//! `:authority` (HTTP/2) names the host; HTTP/1.1 still needs one valid `Host` beside it (its
//! value is ignored, RFC 9112 section 3.2.2), and on HTTP/2 a `host` header that is present
//! must name the same authority (RFC 9113 section 8.3.1). A request with no authority at all
//! is allowed only where the protocol allows it (HTTP/1.0, HTTP/2): it goes to the `*` route.
//!
//! Valid means `uri-host [":" port]` where the host is a bracketed IPv6 address or a DNS-style
//! name (letters, digits, `-`, `.`, `_`, `~`); berth routes names, so the rarer reg-name
//! characters of RFC 3986 (sub-delims, percent-encoding) and userinfo are refused too.
//!
//! Nothing here allocates unless an HTTP/2 `:authority` has to become a header value.

use http::header::{self, HeaderValue};
use http::{Request, Version};

use crate::error::ProxyError;

/// The host of `req` (`Ok(None)`: no authority, which HTTP/1.0 and HTTP/2 may omit), or
/// [`ProxyError::BadHost`].
pub(crate) fn request_host<B>(req: &Request<B>) -> Result<Option<HeaderValue>, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some()
        || host.is_some_and(|h| !valid(h.as_bytes()))
        || (host.is_none() && req.version() == Version::HTTP_11)
    {
        return Err(ProxyError::BadHost);
    }
    // An empty Host is what a client sends for a target without authority.
    let host = host.filter(|h| !h.is_empty());
    let Some(authority) = req.uri().authority() else {
        return Ok(host.cloned());
    };
    let authority = authority.as_str();
    if !valid(authority.as_bytes()) {
        return Err(ProxyError::BadHost);
    }
    match host {
        Some(h) if h.as_bytes().eq_ignore_ascii_case(authority.as_bytes()) => Ok(Some(h.clone())),
        Some(_) if req.version() == Version::HTTP_2 => Err(ProxyError::BadHost),
        _ => HeaderValue::from_str(authority)
            .map(Some)
            .map_err(|_| ProxyError::BadHost),
    }
}

/// `uri-host [":" port]` with a bracketed IPv6 address or a DNS-style name as the host.
pub(crate) fn valid(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let ok = std::str::from_utf8(&rest[..end])
            .is_ok_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
        if !ok {
            return false;
        }
        match &rest[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&b""[..], port),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &b""[..]),
        }
    };
    host.iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && (port.is_empty() || std::str::from_utf8(port).is_ok_and(|p| p.parse::<u16>().is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        for ok in [
            "shop.example.com",
            "Shop.Example.COM:8080",
            "example.com.",
            "127.0.0.1:80",
            "[::1]",
            "[2001:db8::1]:443",
            "under_score.test",
            "localhost:",
        ] {
            assert!(valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "local host/../x",
            "a/b",
            "user@shop.example.com",
            "shop.example.com:80:80",
            "shop.example.com:99999",
            "shop.example.com:8o",
            "[::1",
            "[not-v6]",
            "[::1]x",
            "a,b",
            "%61.test",
            "a\tb",
        ] {
            assert!(!valid(bad.as_bytes()), "{bad}");
        }
    }

    fn check(version: Version, uri: &str, hosts: &[&str], expected: Result<Option<&str>, ()>) {
        let mut req = Request::get(uri).version(version).body(()).unwrap();
        for h in hosts {
            req.headers_mut()
                .append(header::HOST, HeaderValue::from_str(h).unwrap());
        }
        let got = request_host(&req);
        let got = got
            .as_ref()
            .map(|h| h.as_ref().map(|v| v.to_str().unwrap()))
            .map_err(|_| ());
        assert_eq!(got, expected, "{version:?} {uri} {hosts:?}");
    }

    #[test]
    fn rules() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        // HTTP/1.1: exactly one valid Host.
        check(HTTP_11, "/", &["shop.test"], Ok(Some("shop.test")));
        check(HTTP_11, "/", &[], Err(()));
        check(HTTP_11, "/", &["a.test", "a.test"], Err(()));
        check(HTTP_11, "/", &["local host/../x"], Err(()));
        check(HTTP_11, "/", &[""], Ok(None));
        // absolute form: the target's authority, with a Host still required
        check(HTTP_11, "http://a.test/x", &["b.test"], Ok(Some("a.test")));
        check(HTTP_11, "http://a.test/x", &[], Err(()));
        check(HTTP_11, "http://u@a.test/x", &["a.test"], Err(()));
        // HTTP/1.0 may leave the host out: the `*` route
        check(HTTP_10, "/", &[], Ok(None));
        check(HTTP_10, "/", &["a.test", "b.test"], Err(()));
        // HTTP/2: :authority, and a host header that agrees with it
        check(HTTP_2, "http://a.test/", &[], Ok(Some("a.test")));
        check(
            HTTP_2,
            "http://a.test:8443/",
            &["A.test:8443"],
            Ok(Some("A.test:8443")),
        );
        check(HTTP_2, "http://a.test/", &["b.test"], Err(()));
        check(HTTP_2, "http://u@a.test/", &[], Err(()));
        check(HTTP_2, "/", &["a.test"], Ok(Some("a.test")));
        check(HTTP_2, "/", &[], Ok(None));
    }
}
