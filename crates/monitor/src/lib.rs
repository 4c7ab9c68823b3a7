//! Monitoring: a bounded history of numeric series, alert rules and their state machine, and
//! notifications. This crate knows nothing of deploys, the proxy or berth.toml: the daemon
//! feeds it numbers and already-parsed rules, and gets back transitions to record and
//! messages to send.
//!
//! - [`History`]: per series, the last hour at 10 s and the last day at 1 min in fixed
//!   rings (about 7.5 KB per series, however many points are recorded);
//! - [`Alerts`]: inactive → pending → firing(warning ⇄ critical) → resolved, with `for`,
//!   hysteresis (`clear_after`) and reminders;
//! - [`Notifier`]: webhook (Alertmanager's JSON), Slack, Discord, ntfy and email (SMTP),
//!   with retries and a status per channel.
//!
//! Invariants:
//! - memory is bounded by the number of series and alerts, never by time or traffic;
//! - no output of this crate — [`Channel::shown`], errors, status — contains a channel's
//!   secret: a URL's path, query or password, an SMTP user or password;
//! - one crypto provider, ring (no aws-lc-rs), for HTTPS and SMTP alike;
//! - no IO outside [`Notifier::send`]; [`History`] and [`Alerts`] are plain values driven by
//!   the caller's clock.

mod alerts;
mod history;
mod notify;

pub use alerts::{Alert, AlertKey, Alerts, Change, Direction, Rule, Severity, State, Transition};
pub use history::{COARSE, FINE, History, RETENTION, Range, Resolution, SeriesKey};
pub use notify::{
    Channel, ChannelStatus, InvalidChannel, Message, Notifier, NotifierConfig, NotifierError,
    SendError,
};
