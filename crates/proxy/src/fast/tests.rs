//! The fast path's request parser against hyper's server on the same bytes: every head the
//! fast path takes, hyper takes too and reads the same way, and the head written toward the
//! instance carries the same fields as hyper's path writes from a `HeaderMap`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use super::request::{Parsed, parse};
use crate::forward::{ClientAddr, Forwarding, strip_hop_by_hop};

/// What hyper's HTTP/1 server made of the first request in `raw` (`None`: it refused it).
async fn hyper_reads(raw: &[u8]) -> Option<(String, String, Vec<(String, Vec<u8>)>)> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let fields = req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        *s.lock().unwrap() = Some((req.method().to_string(), req.uri().to_string(), fields));
        async { Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new())) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(server), service);
    client.write_all(raw).await.unwrap();
    client.shutdown().await.unwrap();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
    seen.lock().unwrap().take()
}

fn sorted(mut v: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    v.sort();
    v
}

/// (input, whether the fast path takes it)
const CASES: &[(&str, bool)] = &[
    ("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", true),
    (
        "GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: A.test:8080\r\nAccept: */*\r\n\r\n",
        true,
    ),
    (
        "HEAD /h HTTP/1.1\r\nHost: a.test\r\nUser-Agent: x\ty\r\n\r\n",
        true,
    ),
    ("DELETE /d HTTP/1.1\r\nHost: a.test\r\n\r\n", true),
    ("POST /p HTTP/1.1\r\nHost: a.test\r\n\r\n", true),
    ("PURGE /p HTTP/1.1\r\nHost: a.test\r\n\r\n", true),
    ("GET / HTTP/1.1\nHost: a.test\n\n", true),
    ("\r\nGET / HTTP/1.1\r\nHost: a.test\r\n\r\n", true),
    ("GET / HTTP/1.1\r\nHost: \r\n\r\n", true),
    ("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", true),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nX-Obs: caf\u{e9}\r\n\r\n",
        true,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: x\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nForwarded: for=1.2.3.4\r\nX-Request-Id: client-1\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n\r\n",
        true,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        true,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n",
        true,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nAccept-Encoding: identity\r\n\r\n",
        true,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nAccept-Encoding: gzip;q=0\r\n\r\n",
        true,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nAccept-Encoding: gzip, br\r\n\r\n",
        true,
    ),
    ("GET / HTTP/1.1\r\n\r\n", false),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        false,
    ),
    ("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", false),
    ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", false),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n",
        false,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello",
        false,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        false,
    ),
    (
        "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        false,
    ),
    ("GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", false),
    ("OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", false),
    (
        "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
        false,
    ),
    ("GET /a#frag HTTP/1.1\r\nHost: a.test\r\n\r\n", false),
    ("GET /a\"b HTTP/1.1\r\nHost: a.test\r\n\r\n", false),
    ("GET /caf\u{e9} HTTP/1.1\r\nHost: a.test\r\n\r\n", false),
    ("GET / HTTP/1.0\r\nHost: a.test\r\n\r\n", false),
    ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false),
    ("GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", false),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nX: a\r\n folded\r\n\r\n",
        false,
    ),
    ("GET / HTTP/1.1\r\nHost: a.test\r\nX: a\0b\r\n\r\n", false),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        false,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n\r\n",
        false,
    ),
    (
        "GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
        false,
    ),
    ("GET  / HTTP/1.1\r\nHost: a.test\r\n\r\n", false),
    ("get / HTTP/1.1\r\nHost: a.test\r\n\r\n", true),
];

#[tokio::test]
async fn takes_only_what_hyper_reads_the_same_way() {
    let long = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let mut cases: Vec<(String, bool)> = CASES.iter().map(|(s, f)| ((*s).to_owned(), *f)).collect();
    cases.push((long, false));
    for (raw, fast) in &cases {
        let mut buf = BytesMut::from(raw.as_bytes());
        let parsed = parse(&mut buf, 64 * 1024);
        let head = match parsed {
            Parsed::Head(head) => head,
            Parsed::Partial => panic!("partial: {raw:?}"),
            Parsed::Other => {
                assert!(!fast, "the fast path should take {raw:?}");
                continue;
            }
        };
        assert!(fast, "the fast path took {raw:?}");
        let Some((method, uri, fields)) = hyper_reads(raw.as_bytes()).await else {
            panic!("hyper refuses what the fast path took: {raw:?}");
        };
        assert_eq!(head.method.as_str(), method, "{raw:?}");
        assert_eq!(head.target(), uri, "{raw:?}");
        let ours: Vec<(String, Vec<u8>)> = head
            .fields()
            .map(|(n, v)| (String::from_utf8_lossy(n).to_lowercase(), v.to_vec()))
            .collect();
        assert_eq!(sorted(ours), sorted(fields.clone()), "{raw:?}");

        // Toward the instance: the same fields as hyper's path sets on its HeaderMap.
        let peer = ClientAddr::new("192.0.2.7".parse().unwrap());
        let id = HeaderValue::from_static("berth-1");
        let host = head.host_value();
        let fwd = Forwarding {
            peer: &peer,
            client: "203.0.113.9".parse().unwrap(),
            host: host.as_ref(),
            proto: "https",
            request_id: &id,
        };
        let mut out = Vec::new();
        head.write_upstream(&mut out, "/up", &fwd);
        let mut f = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut f);
        assert!(r.parse(&out).unwrap().is_complete(), "{raw:?}");
        assert_eq!(r.path, Some("/up"));
        let written: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .map(|h| (h.name.to_lowercase(), h.value.to_vec()))
            .collect();
        let mut map = HeaderMap::new();
        for (n, v) in &fields {
            map.append(
                http::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        strip_hop_by_hop(&mut map, false);
        fwd.apply(&mut map);
        let mut expected: Vec<(String, Vec<u8>)> = map
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        if matches!(
            head.method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH
        ) {
            expected.push(("content-length".into(), b"0".to_vec()));
        }
        assert_eq!(sorted(written), sorted(expected), "{raw:?}");
    }
}

#[test]
fn a_head_in_pieces_waits_for_the_rest() {
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHo"[..]);
    assert!(matches!(parse(&mut buf, 1024), Parsed::Partial));
    assert_eq!(buf.len(), 18, "nothing taken");
    buf.extend_from_slice(b"st: a.test\r\n\r\nGET /2 HTTP/1.1\r\n");
    assert!(matches!(parse(&mut buf, 1024), Parsed::Head(_)));
    assert_eq!(&buf[..], b"GET /2 HTTP/1.1\r\n", "the next request stays");
    let mut big = BytesMut::from(&b"GET / HTTP/1.1\r\nX: "[..]);
    big.extend_from_slice(&[b'a'; 2000]);
    assert!(
        matches!(parse(&mut big, 1024), Parsed::Other),
        "over the limit: hyper's 431"
    );
}
