//! Webhook, Slack, Discord and ntfy against a recording HTTP server.

use std::sync::Arc;
use std::time::Duration;

use monitor::{Channel, Notifier, NotifierConfig};
use serde_json::json;

use crate::recorder::Recorder;
use crate::{alert, quick};

#[tokio::test]
async fn every_http_channel_posts_what_its_receiver_expects() {
    let receiver = Recorder::start().await;
    let ntfy = receiver
        .url("/berth-alerts-x7Qp")
        .replace("http://", "http://alice:tk_secret@");
    let channels = vec![
        Channel::Webhook(receiver.url("/alertmanager/hook")),
        Channel::Slack(receiver.url("/services/T000/B000/XXXXAbCd")),
        Channel::Discord(receiver.url("/api/webhooks/123/tok-en_9xY2")),
        Channel::Ntfy(ntfy),
    ];
    let config = NotifierConfig {
        external_url: "https://berth.example.com".into(),
        ..quick()
    };
    let notifier = Notifier::new(channels, config).unwrap();
    let results = notifier.send(&alert()).await;
    let shown: Vec<&str> = results.iter().map(|(shown, _)| shown.as_str()).collect();
    assert_eq!(
        shown,
        [
            "webhook (…/hook)",
            "slack (…/AbCd)",
            "discord (…/9xY2)",
            "ntfy (…/x7Qp)"
        ]
    );
    for (shown, result) in &results {
        assert!(result.is_ok(), "{shown}: {result:?}");
    }
    assert_eq!(receiver.requests().len(), 4);

    let webhook = receiver.request_to("/alertmanager/hook");
    assert_eq!(webhook.method, "POST");
    assert_eq!(webhook.header("content-type"), "application/json");
    assert!(webhook.header("user-agent").starts_with("berth/"));
    let body = webhook.json();
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "berth");
    assert_eq!(body["externalURL"], "https://berth.example.com");
    let alert = &body["alerts"][0];
    assert_eq!(
        alert["labels"],
        json!({"alertname": "p95_latency", "app": "shop", "route": "web /api", "severity": "critical"})
    );
    assert_eq!(
        alert["annotations"],
        json!({"summary": "p95 latency of web /api is 1.2 s", "description": "above the critical threshold of 1 s for 5m"})
    );
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["startsAt"], "2023-11-14T22:13:20Z");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");

    let slack = receiver.request_to("/services/");
    assert_eq!(
        slack.json(),
        json!({"text": "[FIRING critical] shop: p95 latency of web /api is 1.2 s\nabove the critical threshold of 1 s for 5m"})
    );
    let discord = receiver.request_to("/api/webhooks/");
    assert_eq!(
        discord.json()["content"],
        "[FIRING critical] shop: p95 latency of web /api is 1.2 s\nabove the critical threshold of 1 s for 5m"
    );

    let ntfy = receiver.request_to("/berth-alerts-x7Qp");
    assert_eq!(
        ntfy.header("title"),
        "[FIRING critical] shop: p95 latency of web /api is 1.2 s"
    );
    assert_eq!(ntfy.header("priority"), "urgent");
    assert_eq!(ntfy.header("tags"), "rotating_light,alert,shop");
    // base64("alice:tk_secret"): the URL's user and password as basic auth
    assert_eq!(ntfy.header("authorization"), "Basic YWxpY2U6dGtfc2VjcmV0");
    assert!(ntfy.header("content-type").starts_with("text/plain"));
    let text = ntfy.text();
    assert!(
        text.starts_with("above the critical threshold of 1 s for 5m\n"),
        "{text}"
    );
    assert!(text.contains("route: web /api\n"), "{text}");

    for (shown, status) in notifier.status() {
        assert!(status.ok, "{shown}");
        assert_eq!((status.sent_total, status.failed_total), (1, 0), "{shown}");
        assert!(status.last_success_at.is_some(), "{shown}");
    }
}

#[tokio::test]
async fn a_failing_receiver_is_retried_and_its_status_shows_it() {
    let receiver = Recorder::start().await;
    receiver.answer_next(&[500, 503]);
    let config = NotifierConfig {
        // Long enough a pause after the second failure to read the status during it.
        retry_delays: vec![Duration::from_millis(10), Duration::from_millis(700)],
        ..quick()
    };
    let channel = Channel::Slack(receiver.url("/services/T000/B000/XXXXsecret"));
    let notifier = Arc::new(Notifier::new([channel], config).unwrap());
    let sending = tokio::spawn({
        let notifier = notifier.clone();
        async move { notifier.send(&alert()).await }
    });

    let failing = testkit::eventually(
        "the status to show two failures",
        Duration::from_secs(10),
        || {
            let (_, status) = notifier.status().remove(0);
            (status.failures_in_a_row == 2).then_some(status)
        },
    )
    .await;
    assert!(!failing.ok);
    assert_eq!(failing.sent_total, 0);
    let error = failing.last_error.unwrap();
    assert!(
        error.starts_with("answered 503 Service Unavailable: no luck with …"),
        "{error}"
    );

    let results = sending.await.unwrap();
    assert!(results[0].1.is_ok(), "{results:?}");
    assert_eq!(receiver.requests().len(), 3);
    let (shown, status) = notifier.status().remove(0);
    assert_eq!(shown, "slack (…/cret)");
    assert!(status.ok);
    assert_eq!(status.failures_in_a_row, 0);
    assert_eq!((status.sent_total, status.failed_total), (1, 0));
    assert!(status.last_success_at.is_some());
    assert!(
        status.last_error.is_some(),
        "the last error is kept after a success"
    );
}

#[tokio::test]
async fn gives_up_after_every_attempt_and_says_why_without_the_token() {
    let receiver = Recorder::start().await;
    receiver.answer_next(&[500; 4]);
    let channel = Channel::Webhook(receiver.url("/hooks/T000/B000/XXXXsecret?token=abc123def"));
    let notifier = Notifier::new([channel], quick()).unwrap();
    let (_, result) = notifier.send(&alert()).await.remove(0);
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 4);
    assert_eq!(receiver.requests().len(), 4);
    // The receiver echoed the URL's path and query in its answer: scrubbed.
    assert_eq!(
        err.to_string(),
        "answered 500 Internal Server Error: no luck with … (after 4 attempt(s))"
    );
    let (_, status) = notifier.status().remove(0);
    assert!(!status.ok);
    assert_eq!(status.failures_in_a_row, 4);
    assert_eq!((status.sent_total, status.failed_total), (0, 1));

    // It answers again: the next message goes through and the status is ok.
    let (_, result) = notifier.send(&alert()).await.remove(0);
    assert!(result.is_ok());
    let (_, status) = notifier.status().remove(0);
    assert!(status.ok);
    assert_eq!(
        (
            status.sent_total,
            status.failed_total,
            status.failures_in_a_row
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let receiver = Recorder::start().await;
    receiver.answer_next(&[404]);
    let notifier = Notifier::new(
        [Channel::Discord(receiver.url("/api/webhooks/1/gone"))],
        quick(),
    )
    .unwrap();
    let (_, result) = notifier.send(&alert()).await.remove(0);
    assert_eq!(result.unwrap_err().attempts, 1);
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn a_receiver_that_is_down_shows_a_clean_error() {
    // A port nobody listens on.
    let port = testkit::free_port();
    let url = format!(
        "http://hook-user:hunter2secret@127.0.0.1:{port}/services/T000/B000/XXXXsecret?token=abc123def"
    );
    let notifier = Notifier::new([Channel::Slack(url)], quick()).unwrap();
    let (shown, result) = notifier.send(&alert()).await.remove(0);
    assert_eq!(shown, "slack (…/cret)");
    let err = result.unwrap_err().to_string();
    let (_, status) = notifier.status().remove(0);
    let last_error = status.last_error.clone().unwrap();
    for text in [&err, &last_error] {
        assert!(text.contains("Connection refused"), "{text}");
        for secret in [
            "XXXXsecret",
            "T000",
            "abc123def",
            "hunter2secret",
            "hook-user",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    assert!(!status.ok);
    assert_eq!(status.failures_in_a_row, 4);
    assert_eq!(status.failed_total, 1);
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/silent", listener.local_addr().unwrap());
    // Accepts, reads nothing, answers nothing.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let config = NotifierConfig {
        retry_delays: Vec::new(),
        timeout: Duration::from_millis(300),
        ..quick()
    };
    let notifier = Notifier::new([Channel::Webhook(url)], config).unwrap();
    let (_, result) = notifier.send(&alert()).await.remove(0);
    assert_eq!(
        result.unwrap_err().to_string(),
        "no answer within 300ms (after 1 attempt(s))"
    );
    holder.abort();
}

#[test]
fn invalid_channels_are_refused_at_construction() {
    let err = Notifier::new(
        [Channel::Slack(
            "hooks.slack.com/services/T000/B000/XXXXsecret".into(),
        )],
        NotifierConfig::default(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.starts_with("slack: not a URL"), "{err}");
    assert!(!err.contains("XXXXsecret"), "{err}");
}
