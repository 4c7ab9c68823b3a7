//! Notifications: a [`Message`] sent to every [`Channel`], with retries, and a status per
//! channel the daemon shows (status, metrics, dashboard).
//!
//! | channel   | what is sent                                                        |
//! | --------- | ------------------------------------------------------------------- |
//! | webhook   | POST of Alertmanager's webhook JSON (version 4), one alert in it     |
//! | slack     | POST `{"text": "headline\ntext"}` (an incoming webhook)            |
//! | discord   | POST `{"content": "headline\ntext"}`                                |
//! | ntfy      | POST of the text to the topic URL, `Title`, `Priority`, `Tags`      |
//! | email     | SMTP, the headline as subject, plain text (see `email.rs` for URLs) |
//!
//! Each message is tried once, then once more after each of [`NotifierConfig::retry_delays`]
//! (1 s, 4 s, 16 s by default) while the failure is worth retrying (a connection error, a
//! timeout, a 5xx, 408 or 429 answer, a transient SMTP error; not a refused certificate);
//! every attempt has
//! [`NotifierConfig::timeout`]. Channels are sent to concurrently.
//!
//! Nothing this module returns or logs contains a channel's URL path, query, user or
//! password: errors are scrubbed of them before they are kept or returned.

mod channel;
mod email;
mod http;
mod message;

use std::error::Error as StdError;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use ::http::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use tracing::debug;

pub use channel::{Channel, InvalidChannel};
pub use message::Message;

use channel::Secrets;

/// How the [`Notifier`] sends.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// The waits between attempts: one attempt, then one more after each delay.
    /// Default: 1 s, 4 s, 16 s (four attempts).
    pub retry_delays: Vec<Duration>,
    /// The time one attempt may take, connection and TLS included. Default: 10 s.
    pub timeout: Duration,
    /// Certificates trusted besides the Mozilla roots (a private CA), for HTTPS and SMTP.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Alertmanager's `receiver` in webhook payloads. Default: `berth`.
    pub receiver: String,
    /// Alertmanager's `externalURL` (and each alert's `generatorURL`) in webhook payloads:
    /// the dashboard's address. Default: empty.
    pub external_url: String,
}

impl Default for NotifierConfig {
    fn default() -> NotifierConfig {
        NotifierConfig {
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(4),
                Duration::from_secs(16),
            ],
            timeout: Duration::from_secs(10),
            extra_roots: Vec::new(),
            receiver: "berth".into(),
            external_url: String::new(),
        }
    }
}

/// How a channel has been doing, readable at any time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatus {
    /// The latest attempt succeeded, or none was made yet.
    pub ok: bool,
    /// The latest failed attempt's error (kept after a later success), without secrets.
    pub last_error: Option<String>,
    /// Failed attempts since the last success (retries included).
    pub failures_in_a_row: u32,
    pub last_success_at: Option<SystemTime>,
    pub last_failure_at: Option<SystemTime>,
    /// Messages delivered.
    pub sent_total: u64,
    /// Messages given up on after every attempt.
    pub failed_total: u64,
}

impl Default for ChannelStatus {
    fn default() -> ChannelStatus {
        ChannelStatus {
            ok: true,
            last_error: None,
            failures_in_a_row: 0,
            last_success_at: None,
            last_failure_at: None,
            sent_total: 0,
            failed_total: 0,
        }
    }
}

/// A message that could not be delivered to a channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (after {attempts} attempt(s))")]
pub struct SendError {
    pub attempts: u32,
    /// The last attempt's error, without secrets.
    pub reason: String,
}

/// What can stop a [`Notifier`] from being made.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error(transparent)]
    Channel(#[from] InvalidChannel),
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// The channels and their status. Cheap to share behind an `Arc`; [`Notifier::send`] takes
/// `&self`.
pub struct Notifier {
    slots: Vec<Slot>,
    http: http::Client,
    config: NotifierConfig,
}

struct Slot {
    channel: Channel,
    shown: String,
    secrets: Secrets,
    route: Route,
    status: Mutex<ChannelStatus>,
}

/// A channel made ready to send.
enum Route {
    Webhook(http::Target),
    Slack(http::Target),
    Discord(http::Target),
    Ntfy(http::Target),
    Email(email::Mailer),
}

/// One failed attempt, before its text is scrubbed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) reason: String,
    pub(crate) retry: bool,
}

impl Failure {
    pub(crate) fn retry(reason: String) -> Failure {
        Failure {
            reason,
            retry: true,
        }
    }

    pub(crate) fn permanent(reason: String) -> Failure {
        Failure {
            reason,
            retry: false,
        }
    }
}

impl Notifier {
    /// Checks every channel ([`Channel::validate`]) and prepares its client; no IO.
    pub fn new(
        channels: impl IntoIterator<Item = Channel>,
        config: NotifierConfig,
    ) -> Result<Notifier, NotifierError> {
        let http = http::client(&config.extra_roots)?;
        let mut slots = Vec::new();
        for channel in channels {
            let route = match &channel {
                Channel::Email { to, smtp_url } => email::Smtp::parse(to, smtp_url)
                    .and_then(|smtp| smtp.mailer(&config.extra_roots, config.timeout))
                    .map(Route::Email),
                Channel::Webhook(url) => http::Target::parse(url).map(Route::Webhook),
                Channel::Slack(url) => http::Target::parse(url).map(Route::Slack),
                Channel::Discord(url) => http::Target::parse(url).map(Route::Discord),
                Channel::Ntfy(url) => http::Target::parse(url).map(Route::Ntfy),
            }
            .map_err(|reason| channel.invalid(reason))?;
            slots.push(Slot {
                shown: channel.shown(),
                secrets: Secrets::of(&channel),
                channel,
                route,
                status: Mutex::new(ChannelStatus::default()),
            });
        }
        Ok(Notifier {
            slots,
            http,
            config,
        })
    }

    /// The channels, in the order given.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.slots.iter().map(|slot| &slot.channel)
    }

    /// Each channel as [`Channel::shown`] names it, with its status, in the order given.
    pub fn status(&self) -> Vec<(String, ChannelStatus)> {
        self.slots
            .iter()
            .map(|slot| (slot.shown.clone(), slot.status().clone()))
            .collect()
    }

    /// Sends `message` to every channel at once; returns, in the channels' order, each one's
    /// name and outcome once its last attempt is over.
    pub async fn send(&self, message: &Message) -> Vec<(String, Result<(), SendError>)> {
        let sends = self
            .slots
            .iter()
            .map(|slot| async move { (slot.shown.clone(), self.deliver(slot, message).await) });
        futures_util::future::join_all(sends).await
    }

    async fn deliver(&self, slot: &Slot, message: &Message) -> Result<(), SendError> {
        let mut delays = self.config.retry_delays.iter();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let attempt = tokio::time::timeout(self.config.timeout, self.attempt(slot, message));
            let failure = match attempt.await {
                Ok(Ok(())) => {
                    let mut status = slot.status();
                    status.ok = true;
                    status.failures_in_a_row = 0;
                    status.last_success_at = Some(SystemTime::now());
                    status.sent_total += 1;
                    return Ok(());
                }
                Ok(Err(failure)) => failure,
                Err(_) => Failure::retry(format!("no answer within {:?}", self.config.timeout)),
            };
            let reason = slot.secrets.scrub(&failure.reason);
            let next = delays.next().filter(|_| failure.retry);
            {
                let mut status = slot.status();
                status.ok = false;
                status.last_error = Some(reason.clone());
                status.failures_in_a_row += 1;
                status.last_failure_at = Some(SystemTime::now());
                if next.is_none() {
                    status.failed_total += 1;
                }
            }
            match next {
                Some(delay) => {
                    debug!(channel = %slot.shown, error = %reason, attempts, "notification failed, will retry");
                    tokio::time::sleep(*delay).await;
                }
                None => return Err(SendError { attempts, reason }),
            }
        }
    }

    async fn attempt(&self, slot: &Slot, message: &Message) -> Result<(), Failure> {
        let json = |value: serde_json::Value| Bytes::from(value.to_string());
        let (target, content_type, headers, body) = match &slot.route {
            Route::Email(mailer) => return mailer.send(message).await,
            Route::Webhook(target) => {
                let payload =
                    message.alertmanager(&self.config.receiver, &self.config.external_url);
                (target, "application/json", Vec::new(), json(payload))
            }
            Route::Slack(target) => (
                target,
                "application/json",
                Vec::new(),
                json(message.slack()),
            ),
            Route::Discord(target) => (
                target,
                "application/json",
                Vec::new(),
                json(message.discord()),
            ),
            Route::Ntfy(target) => {
                let (priority, tags) = message.ntfy_priority_and_tags();
                let headers = vec![
                    (
                        HeaderName::from_static("title"),
                        http::title_header(&message.headline()),
                    ),
                    (
                        HeaderName::from_static("priority"),
                        HeaderValue::from_static(priority),
                    ),
                    (
                        HeaderName::from_static("tags"),
                        HeaderValue::try_from(tags).unwrap_or(HeaderValue::from_static("berth")),
                    ),
                ];
                let body = Bytes::from(message.details());
                (target, "text/plain; charset=utf-8", headers, body)
            }
        };
        http::post(&self.http, target, content_type, headers, body).await
    }
}

impl Slot {
    /// The status, whatever a panicking holder left it as (it is only counters).
    fn status(&self) -> MutexGuard<'_, ChannelStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether `err` is a TLS refusal (an unknown issuer, a wrong name, an expired certificate):
/// retrying will not change the certificate. rustls's error may sit inside an `io::Error`,
/// whose `source` skips it.
pub(crate) fn refused_by_tls(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if err.is::<rustls::Error>() || inner.is_some_and(|inner| inner.is::<rustls::Error>()) {
            return true;
        }
        next = err.source();
    }
    false
}

/// An error and its causes on one line, each said once: `a: b: c` (lettre repeats its
/// kind — `Connection error: Connection error: …` — and io errors repeat their inner error).
pub(crate) fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let mut parts: Vec<&str> = text.split(": ").collect();
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("Connection error: {0}")]
        struct Outer(#[source] std::io::Error);
        let inner = std::io::Error::other("Connection error: invalid peer certificate");
        assert_eq!(
            describe(&Outer(inner)),
            "Connection error: invalid peer certificate"
        );
    }
}
