//! The notifier against real receivers on loopback: an HTTP server that records what it is
//! sent (webhook, Slack, Discord, ntfy), and aiosmtpd for email (testkit::Smtp).

mod email;
mod http;
mod recorder;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use monitor::{Message, NotifierConfig};

/// A firing critical alert of app shop.
fn alert() -> Message {
    Message {
        severity: Some("critical".into()),
        status: Some("firing".into()),
        labels: BTreeMap::from([
            ("alertname".into(), "p95_latency".into()),
            ("route".into(), "web /api".into()),
        ]),
        ..Message::new(
            "alert",
            "shop",
            "p95 latency of web /api is 1.2 s",
            "above the critical threshold of 1 s for 5m",
            at(),
        )
    }
}

/// 2023-11-14T22:13:20Z.
fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Quick retries, so failing receivers do not slow the suite.
fn quick() -> NotifierConfig {
    NotifierConfig {
        retry_delays: vec![Duration::from_millis(10); 3],
        timeout: Duration::from_secs(5),
        ..NotifierConfig::default()
    }
}
