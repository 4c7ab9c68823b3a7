//! Header rewriting between client and upstream, and request ids.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Per-connection values computed once: the client address as header text.
pub(crate) struct ClientAddr {
    /// The peer's address (IPv4-mapped IPv6 as IPv4).
    pub ip: IpAddr,
    /// `1.2.3.4` / `::1`
    pub xff: HeaderValue,
    /// `for=1.2.3.4` / `for="[::1]"`
    pub forwarded_for: String,
}

impl ClientAddr {
    pub fn new(ip: IpAddr) -> ClientAddr {
        let ip = ip.to_canonical();
        let text = ip.to_string();
        let forwarded_for = match ip {
            IpAddr::V4(_) => format!("for={text}"),
            IpAddr::V6(_) => format!("for=\"[{text}]\""),
        };
        ClientAddr {
            ip,
            xff: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown")),
            forwarded_for,
        }
    }
}

/// Remove hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Proxy-*`, and `Upgrade` unless `upgrade` (then
/// `Connection: upgrade` is set again so the next hop sees the upgrade).
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    if h.contains_key(header::CONNECTION) {
        let mut named: Vec<HeaderName> = Vec::new();
        for v in h.get_all(header::CONNECTION) {
            for token in v.to_str().unwrap_or("").split(',') {
                let token = token.trim();
                if token.is_empty() || (upgrade && token.eq_ignore_ascii_case("upgrade")) {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    named.push(name);
                }
            }
        }
        for name in named {
            h.remove(name);
        }
        h.remove(header::CONNECTION);
    }
    for name in [
        &KEEP_ALIVE,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
    ] {
        if h.contains_key(name) {
            h.remove(name);
        }
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if h.contains_key(header::UPGRADE) {
        h.remove(header::UPGRADE);
    }
    if h.keys().any(|k| k.as_str().starts_with("proxy-")) {
        let names: Vec<HeaderName> = h
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in names {
            h.remove(name);
        }
    }
    debug_assert!(!h.contains_key(&PROXY_CONNECTION));
}

/// What berth tells the next hop about a request, in headers it owns: set after the client's
/// hop-by-hop headers are gone (so `Connection` can never name them away), and never taken
/// from the client.
pub(crate) struct Forwarding<'a> {
    /// The TCP peer: appended to `X-Forwarded-For`, `for=` of `Forwarded`.
    pub peer: &'a ClientAddr,
    /// The client berth determined (the peer, or behind trusted proxies the address they
    /// name): `X-Real-IP`.
    pub client: IpAddr,
    /// The host the request is for (validated `Host` or `:authority`): `Host`,
    /// `X-Forwarded-Host`, `host=` of `Forwarded`.
    pub host: Option<&'a HeaderValue>,
    pub proto: &'static str,
    pub request_id: &'a HeaderValue,
}

impl Forwarding<'_> {
    /// Sets berth's headers on a request whose hop-by-hop headers were stripped. The
    /// left-most `X-Forwarded-For` entries come from the client and prove nothing; the entry
    /// berth appends (the last one) is the peer address it saw.
    pub fn apply(&self, h: &mut HeaderMap) {
        let peer = self.peer;
        let xff = match h.get(&X_FORWARDED_FOR) {
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + peer.xff.len());
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
                v.extend_from_slice(peer.xff.as_bytes());
                HeaderValue::from_bytes(&v).unwrap_or_else(|_| peer.xff.clone())
            }
            None => peer.xff.clone(),
        };
        h.insert(X_FORWARDED_FOR.clone(), xff);
        h.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(self.proto),
        );
        let real_ip = if self.client == peer.ip {
            peer.xff.clone()
        } else {
            HeaderValue::from_str(&self.client.to_string()).unwrap_or_else(|_| peer.xff.clone())
        };
        h.insert(X_REAL_IP.clone(), real_ip);
        h.insert(X_REQUEST_ID.clone(), self.request_id.clone());
        let mut forwarded = String::with_capacity(64);
        if let Some(prev) = h.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
            forwarded.push_str(prev);
            forwarded.push_str(", ");
        }
        forwarded.push_str(&peer.forwarded_for);
        match self.host {
            Some(host) => {
                // The host berth routed on; for HTTP/2 and absolute-form requests the
                // authority, which an HTTP/1 upstream needs as `Host`.
                h.insert(header::HOST, host.clone());
                h.insert(X_FORWARDED_HOST.clone(), host.clone());
                if let Ok(s) = host.to_str()
                    && !s.contains(['"', '\\'])
                {
                    forwarded.push_str(";host=\"");
                    forwarded.push_str(s);
                    forwarded.push('"');
                }
            }
            None => {
                h.remove(&X_FORWARDED_HOST);
            }
        }
        forwarded.push_str(";proto=");
        forwarded.push_str(self.proto);
        if let Ok(v) = HeaderValue::from_str(&forwarded) {
            h.insert(header::FORWARDED, v);
        }
    }
}

/// Request ids: a random per-process prefix and a counter, e.g. `5f3a9c21b07e44d1-00000000002a`.
pub(crate) struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        hasher.write_u32(std::process::id());
        RequestIds {
            prefix: hasher.finish(),
            next: AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, Relaxed);
        let mut buf = [0u8; 29];
        for i in 0..16 {
            buf[i] = HEX[((self.prefix >> (60 - 4 * i)) & 0xf) as usize];
        }
        buf[16] = b'-';
        for i in 0..12 {
            buf[17 + i] = HEX[((n >> (44 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("unknown"))
    }
}

/// A client's `X-Request-Id` is kept when it is short and printable; otherwise berth makes one.
pub(crate) fn acceptable_request_id(v: &HeaderValue) -> bool {
    !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = h.keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn hop_by_hop() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "basic x"),
            ("proxy-connection", "keep-alive"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["accept"]);
    }

    #[test]
    fn upgrade_kept() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(names(&h), ["connection", "sec-websocket-key", "upgrade"]);
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn forwarding() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-host", "spoofed"),
            ("x-real-ip", "6.6.6.6"),
            ("x-request-id", "client"),
        ]);
        let peer = ClientAddr::new("::1".parse().unwrap());
        let host = HeaderValue::from_static("shop.example.com");
        let id = HeaderValue::from_static("berth-1");
        let mut fwd = Forwarding {
            peer: &peer,
            client: peer.ip,
            host: Some(&host),
            proto: "http",
            request_id: &id,
        };
        fwd.apply(&mut h);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, ::1");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
        assert_eq!(h["host"], "shop.example.com");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-real-ip"], "::1");
        assert_eq!(h["x-request-id"], "berth-1");
        assert_eq!(
            h["forwarded"],
            "for=\"[::1]\";host=\"shop.example.com\";proto=http"
        );
        // behind a trusted proxy the client it names is the real IP
        fwd.client = "203.0.113.7".parse().unwrap();
        fwd.apply(&mut h);
        assert_eq!(h["x-real-ip"], "203.0.113.7");
    }

    #[test]
    fn connection_cannot_name_berths_headers_away() {
        let mut h = map(&[
            (
                "connection",
                "x-request-id, x-real-ip, x-forwarded-for, forwarded, x-forwarded-host, host",
            ),
            ("x-request-id", "client-id"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("host", "shop.example.com"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let peer = ClientAddr::new("127.0.0.1".parse().unwrap());
        let host = HeaderValue::from_static("shop.example.com");
        let id = HeaderValue::from_static("berth-1");
        Forwarding {
            peer: &peer,
            client: peer.ip,
            host: Some(&host),
            proto: "https",
            request_id: &id,
        }
        .apply(&mut h);
        assert_eq!(
            names(&h),
            [
                "forwarded",
                "host",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-real-ip",
                "x-request-id"
            ]
        );
        // the client's hop-by-hop X-Forwarded-For went with its Connection
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-request-id"], "berth-1");
        assert_eq!(h["x-real-ip"], "127.0.0.1");
    }

    #[test]
    fn request_ids_unique() {
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 29);
        assert!(acceptable_request_id(&a));
    }
}
