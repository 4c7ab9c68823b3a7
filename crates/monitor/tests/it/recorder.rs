//! A real HTTP server on 127.0.0.1:0 that records every request and answers with the
//! statuses it is told to, in turn (200 once they are used up).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |value| value.to_str().unwrap_or("(not text)"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct Book {
    requests: Vec<Recorded>,
    answers: VecDeque<u16>,
}

/// The server; stops accepting on drop.
pub struct Recorder {
    addr: SocketAddr,
    book: Arc<Mutex<Book>>,
    server: JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let book = Arc::new(Mutex::new(Book::default()));
        let shared = book.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let book = shared.clone();
                let service = service_fn(move |request| answer(book.clone(), request));
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Recorder { addr, book, server }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The statuses of the next answers, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.book.lock().unwrap().answers.extend(statuses);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.book.lock().unwrap().requests.clone()
    }

    /// The one request whose path starts with `prefix`.
    pub fn request_to(&self, prefix: &str) -> Recorded {
        let matching: Vec<Recorded> = self
            .requests()
            .into_iter()
            .filter(|r| r.target.starts_with(prefix))
            .collect();
        assert_eq!(matching.len(), 1, "requests to {prefix}: {matching:?}");
        matching.into_iter().next().unwrap()
    }
}

/// Records the request; an error answer's body echoes the request's target, as some servers
/// do, so tests can check it does not reach an error message.
async fn answer(
    book: Arc<Mutex<Book>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/".into(), |pq| pq.to_string());
    let status = {
        let mut book = book.lock().unwrap();
        book.requests.push(Recorded {
            method: parts.method.to_string(),
            target: target.clone(),
            headers: parts.headers,
            body,
        });
        book.answers.pop_front().unwrap_or(200)
    };
    let status = StatusCode::from_u16(status).unwrap();
    let body = if status.is_success() {
        "ok".to_owned()
    } else {
        format!("no luck with {target}\n")
    };
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body)))
        .unwrap())
}
