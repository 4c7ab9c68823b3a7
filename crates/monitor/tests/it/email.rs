//! Email through a real SMTP server (aiosmtpd): plain, STARTTLS and TLS.

use std::time::Duration;

use monitor::{Channel, Notifier, NotifierConfig};
use rustls::pki_types::CertificateDer;
use testkit::{Smtp, SmtpTls};

use crate::{alert, quick};

fn email(to: &str, smtp_url: String) -> Channel {
    Channel::Email {
        to: to.into(),
        smtp_url,
    }
}

#[tokio::test]
async fn an_email_arrives_with_its_recipients_subject_and_body() {
    let smtp = Smtp::start();
    let url = format!("{}&from=berth@shop.example", smtp.url());
    let channel = email("ops@example.com, oncall@example.com", url);
    assert_eq!(
        channel.shown(),
        "email ops@example.com, oncall@example.com via 127.0.0.1"
    );
    let notifier = Notifier::new([channel], quick()).unwrap();
    let (_, result) = notifier.send(&alert()).await.remove(0);
    assert!(result.is_ok(), "{result:?}\n{}", smtp.log());

    let mail = smtp.wait_for_messages(1, Duration::from_secs(10)).remove(0);
    assert_eq!(mail.header("From").as_deref(), Some("berth@shop.example"));
    assert_eq!(
        mail.header("To").as_deref(),
        Some("ops@example.com, oncall@example.com")
    );
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[FIRING critical] shop: p95 latency of web /api is 1.2 s")
    );
    assert_eq!(
        mail.header("Date").as_deref(),
        Some("Tue, 14 Nov 2023 22:13:20 +0000")
    );
    assert!(
        mail.header("Content-Type")
            .unwrap()
            .starts_with("text/plain")
    );
    let body = mail.body();
    assert!(
        body.starts_with("above the critical threshold of 1 s for 5m\n"),
        "{body}"
    );
    for line in [
        "app: shop",
        "severity: critical",
        "status: firing",
        "route: web /api",
        "at: 2023-11-14T22:13:20Z",
    ] {
        assert!(body.contains(line), "{line} not in {body}");
    }
    // Both recipients were given to the server.
    assert!(
        mail.header("X-RcptTo")
            .unwrap()
            .contains("oncall@example.com"),
        "{}",
        mail.raw
    );
    let (_, status) = notifier.status().remove(0);
    assert!(status.ok);
    assert_eq!(status.sent_total, 1);
}

#[tokio::test]
async fn email_over_starttls_and_tls_verifies_the_server() {
    for tls in [SmtpTls::StartTls, SmtpTls::Implicit] {
        let smtp = Smtp::start_with(tls);
        let channel = email("ops@example.com", smtp.url());

        // The server's CA is not trusted: the certificate is refused, nothing is sent.
        let notifier = Notifier::new([channel.clone()], quick()).unwrap();
        let (_, result) = notifier.send(&alert()).await.remove(0);
        let err = result.unwrap_err();
        assert_eq!(
            err.reason,
            "Connection error: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(err.attempts, 1, "a certificate refusal is not retried");

        let config = NotifierConfig {
            extra_roots: vec![CertificateDer::from(smtp.ca_der().to_vec())],
            ..quick()
        };
        let notifier = Notifier::new([channel], config).unwrap();
        let (_, result) = notifier.send(&alert()).await.remove(0);
        assert!(result.is_ok(), "{tls:?}: {result:?}\n{}", smtp.log());
        let mail = smtp.wait_for_messages(1, Duration::from_secs(10)).remove(0);
        assert_eq!(mail.header("To").as_deref(), Some("ops@example.com"));
        assert!(
            smtp.log().contains("STARTTLS") == (tls == SmtpTls::StartTls),
            "{}",
            smtp.log()
        );
    }
}

#[tokio::test]
async fn smtp_errors_never_show_the_credentials() {
    let mut smtp = Smtp::start_with(SmtpTls::Implicit);
    let port = smtp.port();
    smtp.stop();
    let url = format!("smtps://mailer-user:hunter2secret@127.0.0.1:{port}");
    let notifier = Notifier::new([email("ops@example.com", url)], quick()).unwrap();
    let (shown, result) = notifier.send(&alert()).await.remove(0);
    assert_eq!(shown, "email ops@example.com via 127.0.0.1");
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 4, "a refused connection is retried");
    let (_, status) = notifier.status().remove(0);
    for text in [err.to_string(), status.last_error.unwrap()] {
        assert!(text.contains("Connection refused"), "{text}");
        for secret in ["hunter2secret", "mailer-user"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    // A server that does not offer STARTTLS: refused before any password is sent.
    let plain = Smtp::start();
    let url = format!(
        "smtp://mailer-user:hunter2secret@127.0.0.1:{}",
        plain.port()
    );
    let notifier = Notifier::new([email("ops@example.com", url)], quick()).unwrap();
    let (_, result) = notifier.send(&alert()).await.remove(0);
    let err = result.unwrap_err();
    assert_eq!(
        err.reason,
        "internal client error: STARTTLS is not supported on this server"
    );
    assert_eq!(err.attempts, 1);
    let log = plain.log();
    assert!(
        !log.contains("AUTH PLAIN") && !log.contains("AUTH LOGIN"),
        "{log}"
    );
    assert!(plain.messages().is_empty());
}
