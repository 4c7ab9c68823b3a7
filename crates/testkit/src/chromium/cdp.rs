//! A DevTools WebSocket, spoken to synchronously: a call sends one command and reads until its
//! answer, handing the events read meanwhile to the caller.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::Instant;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use super::CALL_TIMEOUT;

/// A DevTools WebSocket: commands out, answers and events in.
pub(super) struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Cdp {
    pub fn connect(port: u16, path: &str) -> Result<Cdp, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|err| err.to_string())?;
        stream.set_nodelay(true).map_err(|err| err.to_string())?;
        // Screenshots of long pages are large messages.
        let config = WebSocketConfig::default()
            .max_message_size(Some(256 << 20))
            .max_frame_size(Some(256 << 20));
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tungstenite::client::client_with_config(url.as_str(), stream, Some(config))
            .map_err(|err| format!("WebSocket handshake with {url}: {err}"))?;
        Ok(Cdp { ws, next_id: 1 })
    }

    /// Sends `method` and reads until its answer (up to 30 s), handing the events read
    /// meanwhile to `on_event`.
    pub fn call(
        &mut self,
        method: &str,
        params: Value,
        on_event: &mut dyn FnMut(&str, &Value),
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let command = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(command.to_string()))
            .map_err(|err| format!("send: {err}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let message = self.read(deadline)?;
            if message["id"].as_u64() == Some(id) {
                if let Some(error) = message.get("error") {
                    let text = error["message"].as_str().unwrap_or("an error");
                    return Err(match error["data"].as_str() {
                        Some(data) => format!("{text}: {data}"),
                        None => text.to_owned(),
                    });
                }
                return Ok(message["result"].clone());
            }
            if let Some(event) = message["method"].as_str() {
                on_event(event, &message["params"]);
            }
        }
    }

    /// Reads one message and hands it to `on_event` if it is an event.
    pub fn pump(
        &mut self,
        deadline: Instant,
        on_event: &mut dyn FnMut(&str, &Value),
    ) -> Result<(), String> {
        let message = self.read(deadline)?;
        if let Some(event) = message["method"].as_str() {
            on_event(event, &message["params"]);
        }
        Ok(())
    }

    fn read(&mut self, deadline: Instant) -> Result<Value, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("no answer from chromium within 30 s".to_owned());
            }
            self.ws
                .get_mut()
                .set_read_timeout(Some(left))
                .map_err(|err| err.to_string())?;
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|err| format!("a message that is not JSON: {err}"));
                }
                Ok(Message::Close(_)) => return Err("chromium closed the connection".to_owned()),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(err))
                    if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(err) => return Err(format!("read: {err}")),
            }
        }
    }
}
