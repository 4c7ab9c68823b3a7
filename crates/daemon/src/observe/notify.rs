//! What the alerts' transitions and the daemon's events become: an event in `berth history`
//! for every transition, and a message to every `[[notify]]` channel of the app that asked for
//! that kind of event. Sending runs on tasks of its own (a channel retries for up to ~20 s),
//! never in the sampler or a rollout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use monitor::{Change, Channel, Message, Notifier};
use spec::{NotifyChannel, NotifyEvent};

use crate::core::Core;
use crate::lock::lock;
use crate::observe::shown;

/// One app's channels: what each is configured as (URLs expanded), the events it takes, and
/// its notifier, kept as long as its configuration does not change (its status with it).
type AppChannels = Vec<(Channel, Vec<NotifyEvent>, Arc<Notifier>)>;

#[derive(Default)]
pub(crate) struct Notifications {
    apps: Mutex<HashMap<String, AppChannels>>,
    /// Certificates whose renewal was failing at the previous look, by app.
    cert_failing: Mutex<HashMap<String, bool>>,
    /// How the notifier sends; tests shorten the retries.
    pub config: Mutex<monitor::NotifierConfig>,
}

impl Core {
    /// The app's channels, (re)made from its serving release when their configuration changed.
    fn channels(&self, app: &str) -> AppChannels {
        let Some((spec, env)) = self.with_running(app, |r| (r.spec.clone(), r.env.clone())) else {
            return Vec::new();
        };
        let expand = |t: &str| spec::expand(t, |n| env.get(n).cloned());
        let wanted: Vec<(Channel, Vec<NotifyEvent>)> = spec
            .notify
            .iter()
            .map(|n| {
                let channel = match &n.channel {
                    NotifyChannel::Webhook(u) => Channel::Webhook(expand(u)),
                    NotifyChannel::Slack(u) => Channel::Slack(expand(u)),
                    NotifyChannel::Discord(u) => Channel::Discord(expand(u)),
                    NotifyChannel::Ntfy(u) => Channel::Ntfy(expand(u)),
                    NotifyChannel::Email { to, smtp } => Channel::Email {
                        to: to.clone(),
                        smtp_url: expand(smtp),
                    },
                };
                (channel, n.events.clone())
            })
            .collect();
        let mut apps = lock(&self.observe.notify.apps);
        let cached = apps.entry(app.to_owned()).or_default();
        let same = cached.len() == wanted.len()
            && cached
                .iter()
                .zip(&wanted)
                .all(|((c, e, _), (w, we))| c == w && e == we);
        if !same {
            let config = lock(&self.observe.notify.config).clone();
            *cached = wanted
                .into_iter()
                .filter_map(|(channel, events)| {
                    match Notifier::new([channel.clone()], config.clone()) {
                        Ok(n) => Some((channel, events, Arc::new(n))),
                        Err(err) => {
                            tracing::warn!(app, error = %self.redact(&err.to_string()), "a [[notify]] channel cannot work");
                            None
                        }
                    }
                })
                .collect();
        }
        cached.clone()
    }

    /// Sends `message` to every channel of `app` that takes `event`, on a task of its own.
    pub(crate) fn notify(&self, app: &str, event: NotifyEvent, message: Message) {
        let targets: Vec<Arc<Notifier>> = self
            .channels(app)
            .into_iter()
            .filter(|(_, events, _)| events.contains(&event))
            .map(|(_, _, n)| n)
            .collect();
        if targets.is_empty() {
            return;
        }
        self.tasks.spawn(async move {
            for n in targets {
                for (channel, result) in n.send(&message).await {
                    if let Err(err) = result {
                        tracing::warn!(channel, error = %err, "a notification was not delivered");
                    }
                }
            }
        });
    }

    /// `berth notify test APP`: a test message through every channel, waiting for each.
    pub async fn notify_test(
        &self,
        app: &str,
    ) -> Result<api::NotifyResults, crate::refusal::Refusal> {
        self.known_app(app).await?;
        let message = Message::test(app, SystemTime::now());
        let mut results = Vec::new();
        for (_, _, n) in self.channels(app) {
            for (channel, result) in n.send(&message).await {
                results.push(api::NotifyResult {
                    channel,
                    ok: result.is_ok(),
                    error: result.err().map(|e| self.redact(&e.to_string())),
                });
            }
        }
        Ok(api::NotifyResults {
            app: app.to_owned(),
            results,
        })
    }

    /// (app, channel, status) of every channel made so far, for `/metrics`.
    pub fn notifier_rows(&self) -> Vec<(String, String, monitor::ChannelStatus)> {
        let apps: Vec<String> = self.apps().keys().cloned().collect();
        apps.into_iter()
            .flat_map(|app| {
                self.channels(&app)
                    .into_iter()
                    .flat_map(|(_, _, n)| n.status())
                    .map(move |(channel, s)| (app.clone(), channel, s))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// How each channel of `app` is doing.
    pub fn notifier_status(&self, app: &str) -> Vec<api::NotifierStatus> {
        self.channels(app)
            .into_iter()
            .flat_map(|(_, _, n)| n.status())
            .map(|(channel, s)| api::NotifierStatus {
                channel,
                ok: s.ok,
                last_error: s.last_error.map(|e| self.redact(&e)),
                failures_in_a_row: s.failures_in_a_row,
            })
            .collect()
    }

    pub fn notifiers_json(&self) -> serde_json::Value {
        let apps: Vec<String> = self.apps().keys().cloned().collect();
        let list: Vec<serde_json::Value> = apps
            .iter()
            .flat_map(|app| {
                self.notifier_status(app).into_iter().map(move |s| {
                    serde_json::json!({"app": app, "channel": s.channel, "ok": s.ok, "last_error": s.last_error})
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }

    /// Records and sends the transitions and reminders of one sample; notices certificates
    /// whose renewal started failing.
    pub(crate) async fn effects(
        &self,
        (transitions, reminders): (Vec<monitor::Transition>, Vec<monitor::Alert>),
    ) {
        for t in &transitions {
            let change = t.change();
            if change == Change::PendingCancelled {
                continue;
            }
            let word = match change {
                Change::Pending => "pending",
                Change::Fired => "firing",
                Change::SeverityChanged => "severity changed",
                Change::Resolved => "resolved",
                Change::PendingCancelled => "cancelled",
            };
            let detail = format!(
                "{}{} {word}: {} -> {} (value {}, threshold {})",
                t.key.alert,
                subject(&t.key.subject),
                t.from.as_str(),
                t.to.as_str(),
                shown(&t.key.alert, t.value),
                shown(&t.key.alert, t.threshold),
            );
            let app = if t.key.app.is_empty() {
                "berth"
            } else {
                t.key.app.as_str()
            };
            if let Err(err) = self.db.record_event(app, "alert", detail).await {
                tracing::error!(error = %err, "record an alert transition");
            }
            if matches!(
                change,
                Change::Fired | Change::SeverityChanged | Change::Resolved
            ) && !t.key.app.is_empty()
            {
                let (status, severity) = match t.to {
                    monitor::State::Firing(s) => ("firing", Some(s.as_str().to_owned())),
                    _ => (
                        "resolved",
                        match t.from {
                            monitor::State::Firing(s) => Some(s.as_str().to_owned()),
                            _ => None,
                        },
                    ),
                };
                self.notify_alert(&t.key, status, severity, t.value, t.threshold, t.at);
            }
        }
        for a in reminders.iter().filter(|a| !a.key.app.is_empty()) {
            self.notify_alert(
                &a.key,
                "firing",
                Some(a.severity.as_str().to_owned()),
                a.value,
                a.threshold,
                a.since,
            );
        }
        self.watch_certificates();
    }

    fn notify_alert(
        &self,
        key: &monitor::AlertKey,
        status: &str,
        severity: Option<String>,
        value: f64,
        threshold: f64,
        since: SystemTime,
    ) {
        // The headline adds the state, the severity and the app (`[FIRING critical] shop: `).
        let of = if key.subject.is_empty() {
            String::new()
        } else {
            format!(" of {}", key.subject)
        };
        let title = format!(
            "{}{of} is {} (threshold {})",
            key.alert,
            shown(&key.alert, value),
            shown(&key.alert, threshold),
        );
        let mut m = Message::new(
            "alert",
            key.app.as_str(),
            title,
            "See `berth alerts` or the dashboard.",
            SystemTime::now(),
        );
        m.status = Some(status.to_owned());
        m.severity = severity;
        m.since = Some(since);
        m.labels.insert("alertname".into(), key.alert.clone());
        if !key.subject.is_empty() {
            m.labels.insert("subject".into(), key.subject.clone());
        }
        self.notify(&key.app, NotifyEvent::Alert, m);
    }

    /// An event of the daemon's (a failed deploy, a rollback, a failed backup) to the app's
    /// channels that take it.
    pub(crate) fn notify_event(&self, app: &str, event: NotifyEvent, title: String, text: String) {
        let message = Message::new(event.as_str(), app, title, text, SystemTime::now());
        self.notify(app, event, message);
    }

    /// `deploy_failed` and `rollback` for a rollout that ended so.
    pub(crate) fn notify_rollout(
        &self,
        app: &str,
        kind: api::DeployKind,
        result: api::DeployResult,
        release: &str,
        reason: Option<&str>,
    ) {
        let why = reason.map(|r| self.redact(r)).unwrap_or_default();
        match (kind, result) {
            (api::DeployKind::Rollback, api::DeployResult::Ok) => self.notify_event(
                app,
                NotifyEvent::Rollback,
                format!("{app} was rolled back to {release}"),
                "berth rollback".to_owned(),
            ),
            (_, api::DeployResult::RolledBack) => {
                self.notify_event(
                    app,
                    NotifyEvent::DeployFailed,
                    format!("the {kind} of {app} {release} failed and was rolled back"),
                    why.clone(),
                );
                self.notify_event(
                    app,
                    NotifyEvent::Rollback,
                    format!("{app} was rolled back from {release}"),
                    why,
                );
            }
            (_, api::DeployResult::Failed) => self.notify_event(
                app,
                NotifyEvent::DeployFailed,
                format!("the {kind} of {app} {release} failed"),
                why,
            ),
            _ => {}
        }
    }

    /// `cert_renewal_failing` once when an app's certificate starts failing to renew.
    fn watch_certificates(&self) {
        let status = self.certs.manager.status();
        let mut failing = lock(&self.observe.notify.cert_failing);
        for c in status {
            let now_failing = c.last_error.is_some();
            let before = failing.insert(c.id.clone(), now_failing).unwrap_or(false);
            if now_failing && !before {
                let why = self.redact(c.last_error.as_deref().unwrap_or_default());
                self.notify_event(
                    &c.id,
                    NotifyEvent::CertRenewalFailing,
                    format!("the certificate of {} does not renew", c.id),
                    format!("names: {}; error: {why}", c.names.join(", ")),
                );
            }
        }
    }
}

fn subject(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" {s}")
    }
}
