//! A tiny HTTP/1.1 client for health probes: one GET, `Connection: close`, status line only.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::types::ProcessSpec;

/// Probe `http://127.0.0.1:{port}{path}` once. `Ok` on a 2xx status; `Err` says what went wrong
/// in words an operator can act on.
pub(crate) async fn check(port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, get_status(port, path)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
        Ok(Ok(status)) => Err(format!("GET {path} on port {port} answered {status}")),
        Ok(Err(e)) => Err(format!("GET {path} on port {port}: {e}")),
        Err(_) => Err(format!(
            "GET {path} on port {port}: no answer within {timeout:?}"
        )),
    }
}

async fn get_status(port: u16, path: &str) -> Result<u16, String> {
    let host = format!("127.0.0.1:{port}");
    http_status(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        &host,
        path,
    )
    .await
}

/// One `GET path` to `addr` with `Host: host` and `Connection: close`; the response's status
/// code, or what went wrong in words. No timeout of its own: wrap it. Also used by the daemon's
/// smoke checks, which go through the proxy.
pub async fn http_status(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> Result<u16, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    http_status_on(stream, host, path).await
}

/// [`http_status`] on a connected stream (e.g. TLS to the proxy's HTTPS listener).
pub async fn http_status_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
) -> Result<u16, String> {
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berth-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send request: {e}"))?;
    // Read just enough for the status line.
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            return parse_status_line(&buf[..end]);
        }
        if buf.len() > 1024 {
            return Err("status line longer than 1 KiB".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read response: {e}"))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "connection closed without a response".into()
            } else {
                "connection closed inside the status line".into()
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `HTTP/1.1 200 OK` -> 200.
fn parse_status_line(line: &[u8]) -> Result<u16, String> {
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!("not an HTTP/1 response: {:?}", truncate(&line, 80)));
    }
    code.parse::<u16>()
        .map_err(|_| format!("bad status code in {:?}", truncate(&line, 80)))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Without a probe, an instance is ready once it has been running this long.
const READY_WITHOUT_PROBE: Duration = Duration::from_secs(1);
/// An adopted process must answer its probe within this long to be kept.
const ADOPT_DEADLINE: Duration = Duration::from_secs(3);

/// First readiness: `healthy_after` passes in a row before the start deadline.
/// `Err` carries the last probe error.
/// An adopted process was ready under the previous daemon: one pass within
/// [`ADOPT_DEADLINE`] (and no wait without a probe) keeps it.
pub(crate) async fn readiness(
    spec: &ProcessSpec,
    started: Instant,
    adopted: bool,
) -> Result<(), Option<String>> {
    let within = if adopted {
        ADOPT_DEADLINE.min(spec.start_deadline)
    } else {
        spec.start_deadline
    };
    let deadline = tokio::time::Instant::from_std(started + within);
    let Some(probe) = &spec.health else {
        if adopted {
            return Ok(());
        }
        if spec.start_deadline < READY_WITHOUT_PROBE {
            tokio::time::sleep_until(deadline).await;
            return Err(Some(format!(
                "start deadline is shorter than the {READY_WITHOUT_PROBE:?} a service without a health probe must run"
            )));
        }
        tokio::time::sleep(READY_WITHOUT_PROBE).await;
        return Ok(());
    };
    let needed = if adopted {
        1
    } else {
        probe.healthy_after.max(1)
    };
    let mut passes = 0;
    let mut last_error = None;
    loop {
        let next = tokio::time::Instant::now() + probe.interval;
        match tokio::time::timeout_at(deadline, check(spec.port, &probe.path, probe.timeout)).await
        {
            Err(_) => return Err(last_error),
            Ok(Ok(())) => {
                passes += 1;
                if passes >= needed {
                    return Ok(());
                }
            }
            Ok(Err(e)) => {
                passes = 0;
                last_error = Some(e);
            }
        }
        if next >= deadline {
            tokio::time::sleep_until(deadline).await;
            return Err(last_error);
        }
        tokio::time::sleep_until(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_status_line;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Ok(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Ok(204));
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line(b"HTTP/1.1 2x0 OK").is_err());
    }
}
