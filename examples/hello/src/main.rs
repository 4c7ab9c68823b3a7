//! hello: the smallest app berth can run. A std-only HTTP/1.1 server with keep-alive.
//!
//! - `GET /` answers `hello from release <BERTH_RELEASE> instance <BERTH_INSTANCE>: <GREETING>`
//! - `GET /health/ready` answers 200 `ok`
//! - anything else is 404
//!
//! It binds `127.0.0.1:$PORT`, as every berth service does, and logs one line per connection
//! to stdout so `berth logs` has something to show.

use std::env;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

fn main() {
    let port = env::var("PORT").unwrap_or_else(|_| "8000".to_owned());
    let release = env::var("BERTH_RELEASE").unwrap_or_else(|_| "dev".to_owned());
    let instance = env::var("BERTH_INSTANCE").unwrap_or_else(|_| "0".to_owned());
    let greeting = env::var("GREETING").unwrap_or_else(|_| "hello".to_owned());
    let body = format!("hello from release {release} instance {instance}: {greeting}\n");

    let listener = match TcpListener::bind(("127.0.0.1", port.parse().unwrap_or(8000))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("hello: release {release} instance {instance} listening on 127.0.0.1:{port}");
    for stream in listener.incoming().flatten() {
        let body = body.clone();
        thread::spawn(move || {
            let _ = serve(stream, &body);
        });
    }
}

fn serve(stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut close = false;
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                    close = true;
                } else if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                }
            }
        }
        // Discard a request body, if any.
        std::io::copy(
            &mut (&mut reader).take(content_length as u64),
            &mut std::io::sink(),
        )?;

        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        let (status, text) = match (method, path) {
            ("GET" | "HEAD", "/") => ("200 OK", body),
            ("GET" | "HEAD", "/health/ready") => ("200 OK", "ok\n"),
            _ => ("404 Not Found", "not found\n"),
        };
        let connection = if close { "close" } else { "keep-alive" };
        write!(
            out,
            "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: {connection}\r\n\r\n",
            text.len()
        )?;
        if method != "HEAD" {
            out.write_all(text.as_bytes())?;
        }
        out.flush()?;
        if close {
            return Ok(());
        }
    }
}
