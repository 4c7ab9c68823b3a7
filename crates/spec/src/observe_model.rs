//! The model of `[alerts]` and `[[notify]]`: what the daemon watches in an app and where it
//! says so.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `[alerts]`: when the daemon warns about an app, and how often it says so again. Always
/// complete: every [`AlertName`] has a rule. A table left out is [`AlertsSpec::default`]; a
/// partial `[alerts]` overrides only the alerts it names, and within one only the fields it
/// gives (`p95_latency = { critical = "2s" }` keeps `warn = "500ms"` and `for = "5m"`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsSpec {
    /// One rule per alert, all eight of them.
    pub rules: BTreeMap<AlertName, AlertRule>,
    /// `repeat = "4h"`: how often an alert still firing is sent again. At least
    /// [`AlertsSpec::MIN_REPEAT`]; default [`AlertsSpec::DEFAULT_REPEAT`].
    pub repeat: Duration,
}

impl AlertsSpec {
    pub const DEFAULT_REPEAT: Duration = Duration::from_secs(4 * 3600);
    pub const MIN_REPEAT: Duration = Duration::from_secs(60);

    /// The rule of `name` (every alert has one).
    pub fn rule(&self, name: AlertName) -> AlertRule {
        self.rules
            .get(&name)
            .cloned()
            .unwrap_or_else(|| name.default_rule())
    }
}

/// Every alert with its default rule, `repeat = "4h"`.
impl Default for AlertsSpec {
    fn default() -> Self {
        AlertsSpec {
            rules: AlertName::ALL
                .into_iter()
                .map(|name| (name, name.default_rule()))
                .collect(),
            repeat: Self::DEFAULT_REPEAT,
        }
    }
}

/// What the daemon watches, one key of `[alerts]` each. Each doc says what the value and its
/// thresholds measure, in which unit the model holds them, and which way the alert fires
/// ([`AlertName::fires_below`], [`AlertName::breaches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertName {
    /// `p95_latency`: the 95th-percentile response time of the app's requests, in seconds
    /// (`"500ms"` is 0.5). Fires above. Default warn 500ms, critical 1s, for 5m.
    P95Latency,
    /// `error_rate`: the share of the app's responses that are 5xx, a fraction (`"1%"` is
    /// 0.01). Fires above. Default warn 1%, critical 5%, for 5m.
    ErrorRate,
    /// `memory`: an instance's memory in use as a share of its service's `memory_max`, a
    /// fraction (`"80%"` is 0.8); services without `memory_max` are not judged. Fires above.
    /// Default warn 80%, critical 95%, for 5m.
    Memory,
    /// `restarts`: restarts of the app's instances within the rule's `within`, a count. Fires
    /// above. Default warn 3, critical 10, within 15m.
    Restarts,
    /// `disk_free`: free space on the filesystem holding the app's data (berth's state
    /// directory) as a share of its size, a fraction (`"20%"` is 0.2). Fires **below**.
    /// Default warn 20%, critical 10%.
    DiskFree,
    /// `cert_expiry`: time left before the app's certificate expires, in seconds (`"30d"` is
    /// 2 592 000); apps without `[tls]` are not judged. Fires **below**. Default warn 30d,
    /// critical 7d.
    CertExpiry,
    /// `backup_age`: time since the last successful run of each `[backups.NAME]`, in seconds
    /// (`"26h"` is 93 600); apps without backups are not judged. Fires above. Default
    /// critical 26h, no warn.
    BackupAge,
    /// `instance_down`: how long an instance has been down (exited, or failing its health
    /// check), in seconds (`"1m"` is 60). The threshold is itself a duration, so `for` is
    /// normally left at 0. Fires above. Default critical 1m, no warn.
    InstanceDown,
}

impl AlertName {
    pub const ALL: [AlertName; 8] = [
        AlertName::P95Latency,
        AlertName::ErrorRate,
        AlertName::Memory,
        AlertName::Restarts,
        AlertName::DiskFree,
        AlertName::CertExpiry,
        AlertName::BackupAge,
        AlertName::InstanceDown,
    ];

    /// The key written in `[alerts]`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::P95Latency => "p95_latency",
            AlertName::ErrorRate => "error_rate",
            AlertName::Memory => "memory",
            AlertName::Restarts => "restarts",
            AlertName::DiskFree => "disk_free",
            AlertName::CertExpiry => "cert_expiry",
            AlertName::BackupAge => "backup_age",
            AlertName::InstanceDown => "instance_down",
        }
    }

    /// Whether the alert fires when its value falls *below* a threshold (`disk_free`,
    /// `cert_expiry`) rather than when it rises above one (all others). For a below-alert
    /// `warn` is the higher threshold, for an above-alert the lower one.
    pub fn fires_below(self) -> bool {
        matches!(self, AlertName::DiskFree | AlertName::CertExpiry)
    }

    /// Whether `value` has reached `threshold`: at or above it, or at or below it for an
    /// alert that [fires below](AlertName::fires_below).
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        if self.fires_below() {
            value <= threshold
        } else {
            value >= threshold
        }
    }

    /// The rule used when `[alerts]` does not name this alert.
    pub fn default_rule(self) -> AlertRule {
        const DAY: f64 = 86_400.0;
        let five_minutes = Duration::from_secs(300);
        let (warn, critical, for_) = match self {
            AlertName::P95Latency => (Some(0.5), Some(1.0), five_minutes),
            AlertName::ErrorRate => (Some(0.01), Some(0.05), five_minutes),
            AlertName::Memory => (Some(0.80), Some(0.95), five_minutes),
            AlertName::Restarts => (Some(3.0), Some(10.0), Duration::ZERO),
            AlertName::DiskFree => (Some(0.20), Some(0.10), Duration::ZERO),
            AlertName::CertExpiry => (Some(30.0 * DAY), Some(7.0 * DAY), Duration::ZERO),
            AlertName::BackupAge => (None, Some(26.0 * 3600.0), Duration::ZERO),
            AlertName::InstanceDown => (None, Some(60.0), Duration::ZERO),
        };
        AlertRule {
            warn,
            critical,
            for_,
            within: (self == AlertName::Restarts).then_some(Duration::from_secs(15 * 60)),
            enabled: true,
        }
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        AlertName::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown alert `{s}`"))
    }
}

/// One alert of `[alerts]`: `p95_latency = { warn = "500ms", critical = "1s", for = "5m" }`.
/// Thresholds are in the unit [`AlertName`] gives for the alert (seconds, a fraction or a
/// count); when both are set, `warn` is the milder one (lower for an alert firing above,
/// higher for one firing below).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// The threshold of a warning; `None`: no warning (`warn = false`, or the default of
    /// `backup_age` and `instance_down`).
    pub warn: Option<f64>,
    /// The threshold of a critical alert; `None`: none (`critical = false`). Never `None`
    /// together with `warn` in an enabled rule.
    pub critical: Option<f64>,
    /// `for = "5m"`: how long the value must stay past a threshold before the alert fires;
    /// zero fires at once.
    pub for_: Duration,
    /// `within = "15m"`: the window restarts are counted in. `Some` for `restarts` only,
    /// `None` for every other alert.
    pub within: Option<Duration>,
    /// `p95_latency = false` turns the alert off (its thresholds are then the defaults, and
    /// unused).
    pub enabled: bool,
}

/// `[[notify]]`: one channel notifications are sent to, and which events it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySpec {
    pub channel: NotifyChannel,
    /// `events = ["alert", "rollback"]`: what is sent to this channel, in the order of
    /// [`NotifyEvent::ALL`], each once. Default: all of them.
    pub events: Vec<NotifyEvent>,
}

/// Where a `[[notify]]` entry sends to: exactly one of its channel keys. URLs are templates
/// like `[env]` values, kept unexpanded (resolve them with [`AppSpec::expand_template`]);
/// every reference is known to be defined, and a literal URL is `http(s)://` and carries no
/// token, credentials or query string (those come from secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyChannel {
    /// `webhook = "https://..."`: a JSON POST in Alertmanager's webhook shape.
    Webhook(String),
    /// `slack = "${SLACK_WEBHOOK_URL}"`: a Slack incoming webhook.
    Slack(String),
    /// `discord = "${DISCORD_WEBHOOK_URL}"`: a Discord webhook.
    Discord(String),
    /// `ntfy = "https://ntfy.sh/TOPIC"`: an ntfy topic.
    Ntfy(String),
    /// `email = { to = "ops@example.com", smtp = "${SMTP_URL}" }`: `to` is one address;
    /// `smtp` a template of an `smtp://` or `smtps://` URL with no password written in the
    /// file.
    Email { to: String, smtp: String },
}

impl NotifyChannel {
    /// The key written in `[[notify]]`: `"webhook"`, `"slack"`, `"discord"`, `"ntfy"` or
    /// `"email"`.
    pub fn kind(&self) -> &'static str {
        match self {
            NotifyChannel::Webhook(_) => "webhook",
            NotifyChannel::Slack(_) => "slack",
            NotifyChannel::Discord(_) => "discord",
            NotifyChannel::Ntfy(_) => "ntfy",
            NotifyChannel::Email { .. } => "email",
        }
    }
}

/// What a `[[notify]]` channel can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NotifyEvent {
    /// `"alert"`: an alert of `[alerts]` fires (again every `repeat`) or resolves.
    Alert,
    /// `"deploy_failed"`: a deploy failed or was rolled back by its gates.
    DeployFailed,
    /// `"rollback"`: a rollback (`berth rollback`, or after a failed deploy).
    Rollback,
    /// `"backup_failed"`: a backup or its restore drill failed.
    BackupFailed,
    /// `"cert_renewal_failing"`: the certificate could not be renewed.
    CertRenewalFailing,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 5] = [
        NotifyEvent::Alert,
        NotifyEvent::DeployFailed,
        NotifyEvent::Rollback,
        NotifyEvent::BackupFailed,
        NotifyEvent::CertRenewalFailing,
    ];

    /// The name written in `events`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Alert => "alert",
            NotifyEvent::DeployFailed => "deploy_failed",
            NotifyEvent::Rollback => "rollback",
            NotifyEvent::BackupFailed => "backup_failed",
            NotifyEvent::CertRenewalFailing => "cert_renewal_failing",
        }
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NotifyEvent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        NotifyEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown event `{s}`"))
    }
}
