//! Small apps for the daemon's tests: a directory with a `berth.toml`, and Python services
//! that answer with the release they belong to. And one plain HTTP/1.1 GET.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP/1.1 GET with `Connection: close`; None when the connection fails.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// An app directory in a temp dir: `berth.toml` plus files.
pub fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("berth-app-")
        .tempdir()
        .unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

/// A python HTTP service answering `/health` and `/` with `BODY` env or the release id.
pub const PY_WEB: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("release " + os.environ["BERTH_RELEASE"] + "\n").encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
print("py web on", os.environ["PORT"], flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// Like [`PY_WEB`], plus a WebSocket echo on `/ws` that prefixes each message with the release,
/// and `CRASH_AFTER` (seconds) / `STATUS` (for every path but /health) / `FAIL_PATH` (500 there)
/// / `FAIL_AFTER` (seconds: then every other request but /health answers 500) to make broken
/// releases, `START_DELAY` (seconds before it listens) to make a slow one.
pub const PY_WS_WEB: &str = r#"
import base64, hashlib, os, struct, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
RELEASE = os.environ["BERTH_RELEASE"]
STATUS = int(os.environ.get("STATUS", "200"))
FAIL_PATH = os.environ.get("FAIL_PATH")
FAIL_AT = time.monotonic() + float(os.environ.get("FAIL_AFTER", "inf"))
SEEN = [0]
time.sleep(float(os.environ.get("START_DELAY", "0")))
if os.environ.get("CRASH_AFTER"):
    threading.Timer(float(os.environ["CRASH_AFTER"]), lambda: os._exit(9)).start()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/ws":
            return self.websocket()
        body = ("release " + RELEASE + "\n").encode()
        status = 500 if self.path == FAIL_PATH else STATUS
        if self.path != "/health" and time.monotonic() >= FAIL_AT:
            SEEN[0] += 1
            status = 500 if SEEN[0] % 2 else status
        self.send_response(200 if self.path == "/health" else status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            h = self.rfile.read(2)
            if len(h) < 2:
                return
            op, n = h[0] & 0x0F, h[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            mask = self.rfile.read(4) if h[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if op == 8:
                self.wfile.write(b"\x88\x00")
                self.wfile.flush()
                return
            out = (RELEASE + ": ").encode() + data
            self.wfile.write(bytes([0x81, len(out)]) + out)
            self.wfile.flush()
    def log_message(self, *a):
        pass
print("py web", RELEASE, "on", os.environ["PORT"], flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;
