use futures_util::SinkExt;
use proxy::{Balance, HostPattern};
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::support::*;

#[tokio::test]
async fn websocket_echo_both_ways() {
    let up = websocket_upstream("ws").await;
    let p = pool("ws", Balance::RoundRobin, vec![up.upstream()]);
    let proxy = TestProxy::start(config(), vec![route("r", HostPattern::Any, "/", &p)]).await;
    let mut ws = ws_connect(proxy.addr, "chat.example.com", "/socket").await;
    // upstream -> client
    assert_eq!(
        ws_next_text(&mut ws).await.as_deref(),
        Some("hello from ws")
    );
    // client -> upstream -> client, many times
    for i in 0..50 {
        ws.send(Message::text(format!("ping {i}"))).await.unwrap();
        assert_eq!(ws_next_text(&mut ws).await, Some(format!("ping {i}")));
    }
    let big = "x".repeat(256 * 1024);
    ws.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(ws_next_text(&mut ws).await, Some(big));
    assert!(
        eventually(std::time::Duration::from_secs(1), || proxy
            .proxy
            .metrics_text()
            .contains("berth_proxy_open_websockets 1"))
        .await
    );
    ws.close(None).await.unwrap();
    let upstream = &p.upstreams()[0];
    assert!(
        eventually(std::time::Duration::from_secs(5), || upstream.websockets()
            == 0)
        .await
    );
}

#[tokio::test]
async fn websocket_gets_going_away_when_the_proxy_stops() {
    let up = websocket_upstream("ws").await;
    let p = pool("ws", Balance::RoundRobin, vec![up.upstream()]);
    let config = proxy::ProxyConfig {
        drain_grace: std::time::Duration::from_millis(200),
        ..config()
    };
    let mut proxy = TestProxy::start(config, vec![route("r", HostPattern::Any, "/", &p)]).await;
    let mut ws = ws_connect(proxy.addr, "x", "/").await;
    assert_eq!(
        ws_next_text(&mut ws).await.as_deref(),
        Some("hello from ws")
    );
    proxy.shutdown();
    assert_eq!(ws_close_code(&mut ws).await, Some(1001), "going away");
    drop(ws);
    proxy.served.await.unwrap().unwrap();
}
