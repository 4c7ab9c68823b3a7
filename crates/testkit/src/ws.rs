//! A WebSocket client for tests, on tokio-tungstenite: [`WsClient`] in async tests,
//! [`BlockingWs`] in synchronous ones.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Message;

/// How long [`WsClient::next_text`] waits for a message.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A WebSocket connection to a server under test. Every failure panics: it is a test's.
pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
}

impl WsClient {
    /// Connect to `addr` (e.g. the proxy) and upgrade `GET path` with `Host: host`. Panics
    /// unless the server answers `101 Switching Protocols`.
    pub async fn connect(addr: SocketAddr, host: &str, path: &str) -> WsClient {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|err| panic!("connect to {addr}: {err}"));
        let url = format!("ws://{host}{path}");
        let (ws, response) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .unwrap_or_else(|err| panic!("WebSocket handshake for {url} via {addr}: {err}"));
        assert_eq!(response.status(), 101, "{response:?}");
        WsClient { ws }
    }

    /// Send one text message.
    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .unwrap_or_else(|err| panic!("send {text:?}: {err}"));
    }

    /// The next text message, or `None` once the connection closed or broke. Panics when
    /// nothing comes within 10 s.
    pub async fn next_text(&mut self) -> Option<String> {
        loop {
            let next = tokio::time::timeout(READ_TIMEOUT, self.ws.next())
                .await
                .expect("no WebSocket message within 10 s");
            match next {
                Some(Ok(Message::Text(text))) => return Some(text.to_string()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Send `text` and return the next text message (an echo server's answer).
    pub async fn echo(&mut self, text: &str) -> String {
        self.send(text).await;
        self.next_text()
            .await
            .unwrap_or_else(|| panic!("the connection closed instead of answering {text:?}"))
    }

    /// Wait (up to `limit`) for the server to end the connection, skipping messages: the code
    /// of its close frame, or `None` when it was cut without one (what a browser calls 1006).
    pub async fn closed(&mut self, limit: Duration) -> Option<u16> {
        tokio::time::timeout(limit, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the WebSocket was still open after {limit:?}"))
    }

    /// Close handshake, then wait (up to 10 s) for the server to close the connection.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(READ_TIMEOUT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// [`WsClient`] for synchronous tests: every call runs on the client's own single-threaded
/// runtime, so other threads of the test go on meanwhile.
pub struct BlockingWs {
    rt: tokio::runtime::Runtime,
    ws: WsClient,
}

impl BlockingWs {
    /// See [`WsClient::connect`].
    pub fn connect(addr: SocketAddr, host: &str, path: &str) -> BlockingWs {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the WebSocket client");
        let ws = rt.block_on(WsClient::connect(addr, host, path));
        BlockingWs { rt, ws }
    }

    /// See [`WsClient::echo`].
    pub fn echo(&mut self, text: &str) -> String {
        self.rt.block_on(self.ws.echo(text))
    }

    /// See [`WsClient::closed`].
    pub fn closed(&mut self, limit: Duration) -> Option<u16> {
        self.rt.block_on(self.ws.closed(limit))
    }

    /// See [`WsClient::close`].
    pub fn close(self) {
        let BlockingWs { rt, ws } = self;
        rt.block_on(ws.close());
    }
}
