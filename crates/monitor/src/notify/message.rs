//! What a notification says, and how each kind of channel wants it written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{Value, json};

/// One notification: an alert firing or resolved, or an event (a failed deploy, a rollback,
/// a failed backup, a certificate that does not renew, a test).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `"alert"`, `"deploy_failed"`, `"rollback"`, `"backup_failed"`,
    /// `"cert_renewal_failing"`, `"test"`.
    pub kind: String,
    pub app: String,
    /// One line: `"p95 latency of web /api is 1.2 s"`.
    pub title: String,
    /// The details, plain text.
    pub text: String,
    /// `"warning"` or `"critical"` for an alert.
    pub severity: Option<String>,
    /// `"firing"` or `"resolved"` for an alert.
    pub status: Option<String>,
    /// More labels for the webhook's JSON (`alertname`, `route`, `instance`, …).
    pub labels: BTreeMap<String, String>,
    pub at: SystemTime,
    /// When the alert started firing: Alertmanager's `startsAt`; `None` means `at`.
    pub since: Option<SystemTime>,
}

impl Message {
    /// A message of `kind` with no severity, status or labels.
    pub fn new(
        kind: impl Into<String>,
        app: impl Into<String>,
        title: impl Into<String>,
        text: impl Into<String>,
        at: SystemTime,
    ) -> Message {
        Message {
            kind: kind.into(),
            app: app.into(),
            title: title.into(),
            text: text.into(),
            severity: None,
            status: None,
            labels: BTreeMap::new(),
            at,
            since: None,
        }
    }

    /// What `berth notify test APP` sends through every channel.
    pub fn test(app: impl Into<String>, at: SystemTime) -> Message {
        Message::new(
            "test",
            app,
            "test notification from berth",
            "If you can read this, berth's notifications reach this channel.",
            at,
        )
    }

    fn resolved(&self) -> bool {
        self.status.as_deref() == Some("resolved")
    }

    /// The one-line summary every channel leads with: `[FIRING critical] shop: …`,
    /// `[RESOLVED] shop: …`, `[deploy_failed] shop: …`.
    pub fn headline(&self) -> String {
        let mut line = String::from("[");
        if self.kind == "alert" {
            line.push_str(if self.resolved() {
                "RESOLVED"
            } else {
                "FIRING"
            });
            if let (false, Some(severity)) = (self.resolved(), &self.severity) {
                let _ = write!(line, " {severity}");
            }
        } else {
            line.push_str(&self.kind);
        }
        line.push_str("] ");
        if !self.app.is_empty() {
            let _ = write!(line, "{}: ", self.app);
        }
        line.push_str(&self.title);
        line
    }

    /// The text with what else is known, for channels that show a body (email, ntfy).
    pub(crate) fn details(&self) -> String {
        let mut text = self.text.clone();
        text.push_str("\n\n");
        let mut field = |name: &str, value: &str| {
            if !value.is_empty() {
                let _ = writeln!(text, "{name}: {value}");
            }
        };
        field("app", &self.app);
        field("kind", &self.kind);
        field("severity", self.severity.as_deref().unwrap_or_default());
        field("status", self.status.as_deref().unwrap_or_default());
        for (name, value) in &self.labels {
            field(name, value);
        }
        field("at", &rfc3339(self.at));
        text
    }

    /// Alertmanager's webhook payload (version 4) with this message as its one alert; an
    /// event's `alertname` is its kind.
    pub(crate) fn alertmanager(&self, receiver: &str, external_url: &str) -> Value {
        let status = if self.resolved() {
            "resolved"
        } else {
            "firing"
        };
        let mut labels = self.labels.clone();
        labels
            .entry("alertname".into())
            .or_insert_with(|| self.kind.clone());
        labels.insert("app".into(), self.app.clone());
        if let Some(severity) = &self.severity {
            labels.insert("severity".into(), severity.clone());
        }
        let annotations = BTreeMap::from([
            ("summary", self.title.as_str()),
            ("description", self.text.as_str()),
        ]);
        let group: BTreeMap<&str, &str> = ["alertname", "app"]
            .into_iter()
            .filter_map(|name| labels.get(name).map(|value| (name, value.as_str())))
            .collect();
        let group_key = group
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect::<Vec<_>>()
            .join(",");
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{{group_key}}}"),
            "truncatedAlerts": 0,
            "status": status,
            "receiver": receiver,
            "groupLabels": group,
            "commonLabels": labels,
            "commonAnnotations": annotations,
            "externalURL": external_url,
            "alerts": [{
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(self.since.unwrap_or(self.at)),
                // Go's zero time, as Alertmanager sends for an alert still firing.
                "endsAt": if self.resolved() { rfc3339(self.at) } else { "0001-01-01T00:00:00Z".into() },
                "generatorURL": external_url,
                "fingerprint": fingerprint(&labels),
            }],
        })
    }

    /// A Slack incoming webhook's body.
    pub(crate) fn slack(&self) -> Value {
        json!({ "text": truncate(&format!("{}\n{}", self.headline(), self.text), 3000) })
    }

    /// A Discord webhook's body (Discord refuses content over 2000 characters).
    pub(crate) fn discord(&self) -> Value {
        json!({ "content": truncate(&format!("{}\n{}", self.headline(), self.text), 2000) })
    }

    /// ntfy's `Priority` (`urgent` for critical, `high` for a warning or a failure, else
    /// `default`) and `Tags` (an emoji shortcode ntfy shows, the kind, the app).
    pub(crate) fn ntfy_priority_and_tags(&self) -> (&'static str, String) {
        let (priority, emoji) = match (self.kind.as_str(), self.severity.as_deref()) {
            ("alert", _) if self.resolved() => ("default", "white_check_mark"),
            ("alert", Some("critical")) => ("urgent", "rotating_light"),
            ("alert", _) => ("high", "warning"),
            ("test", _) => ("default", "bell"),
            _ => ("high", "x"),
        };
        let mut tags = vec![emoji, self.kind.as_str()];
        if !self.app.is_empty() {
            tags.push(self.app.as_str());
        }
        (priority, tags.join(","))
    }
}

/// `text` cut to `max` characters, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// RFC 3339 in UTC to the second: `2025-01-31T12:00:00Z`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A label set's fingerprint as Prometheus computes one: FNV-1a (64 bit) over the sorted
/// names and values, each followed by the byte 255.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, value) in labels {
        for bytes in [name.as_bytes(), value.as_bytes()] {
            for &byte in bytes.iter().chain(&[255]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn alert(status: &str) -> Message {
        Message {
            severity: Some("critical".into()),
            status: Some(status.into()),
            labels: BTreeMap::from([
                ("alertname".into(), "p95_latency".into()),
                ("route".into(), "web /api".into()),
            ]),
            since: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            ..Message::new(
                "alert",
                "shop",
                "p95 latency of web /api is 1.2 s",
                "above 1 s for 5m",
                UNIX_EPOCH + Duration::from_secs(1_700_000_600),
            )
        }
    }

    #[test]
    fn headlines() {
        assert_eq!(
            alert("firing").headline(),
            "[FIRING critical] shop: p95 latency of web /api is 1.2 s"
        );
        assert_eq!(
            alert("resolved").headline(),
            "[RESOLVED] shop: p95 latency of web /api is 1.2 s"
        );
        let event = Message::new(
            "deploy_failed",
            "shop",
            "deploy r7 rolled back",
            "",
            UNIX_EPOCH,
        );
        assert_eq!(
            event.headline(),
            "[deploy_failed] shop: deploy r7 rolled back"
        );
    }

    #[test]
    fn alertmanager_payload() {
        let body = alert("resolved").alertmanager("berth", "https://berth.example.com");
        let expected = json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"p95_latency\",app=\"shop\"}",
            "truncatedAlerts": 0,
            "status": "resolved",
            "receiver": "berth",
            "groupLabels": {"alertname": "p95_latency", "app": "shop"},
            "commonLabels": {"alertname": "p95_latency", "app": "shop", "route": "web /api", "severity": "critical"},
            "commonAnnotations": {"summary": "p95 latency of web /api is 1.2 s", "description": "above 1 s for 5m"},
            "externalURL": "https://berth.example.com",
            "alerts": [{
                "status": "resolved",
                "labels": {"alertname": "p95_latency", "app": "shop", "route": "web /api", "severity": "critical"},
                "annotations": {"summary": "p95 latency of web /api is 1.2 s", "description": "above 1 s for 5m"},
                "startsAt": "2023-11-14T22:13:20Z",
                "endsAt": "2023-11-14T22:23:20Z",
                "generatorURL": "https://berth.example.com",
                "fingerprint": body["alerts"][0]["fingerprint"],
            }],
        });
        assert_eq!(body, expected);
        let firing = alert("firing").alertmanager("berth", "");
        assert_eq!(firing["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        // The fingerprint depends on the labels only.
        assert_eq!(
            firing["alerts"][0]["fingerprint"],
            body["alerts"][0]["fingerprint"]
        );
        // An event: alertname is its kind.
        let event = Message::new(
            "backup_failed",
            "shop",
            "backup db failed",
            "pg_dump exited 1",
            UNIX_EPOCH,
        );
        let body = event.alertmanager("berth", "");
        assert_eq!(body["status"], "firing");
        assert_eq!(
            body["alerts"][0]["labels"],
            json!({"alertname": "backup_failed", "app": "shop"})
        );
    }

    #[test]
    fn fingerprint_is_prometheus_fnv() {
        // FNV-1a 64 of nothing is the offset basis.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let a = BTreeMap::from([("a".to_owned(), "bc".to_owned())]);
        let b = BTreeMap::from([("ab".to_owned(), "c".to_owned())]);
        assert_ne!(
            fingerprint(&a),
            fingerprint(&b),
            "the separator keeps names and values apart"
        );
    }

    #[test]
    fn chat_bodies_are_cut_to_size() {
        let mut long = alert("firing");
        long.text = "x".repeat(5000);
        let content = long.discord()["content"].as_str().unwrap().to_owned();
        assert_eq!(content.chars().count(), 2000);
        assert!(content.ends_with('…'));
        assert_eq!(
            alert("firing").slack(),
            json!({"text": "[FIRING critical] shop: p95 latency of web /api is 1.2 s\nabove 1 s for 5m"})
        );
    }

    #[test]
    fn ntfy_priorities() {
        assert_eq!(
            alert("firing").ntfy_priority_and_tags(),
            ("urgent", "rotating_light,alert,shop".into())
        );
        assert_eq!(alert("resolved").ntfy_priority_and_tags().0, "default");
        let test = Message::test("", UNIX_EPOCH);
        assert_eq!(
            test.ntfy_priority_and_tags(),
            ("default", "bell,test".into())
        );
    }
}
