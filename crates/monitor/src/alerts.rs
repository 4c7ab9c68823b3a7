//! Alert rules and the state machine of each alert.
//!
//! An alert is one rule applied to one subject of one app ([`AlertKey`]). The daemon computes
//! a value per alert (from [`History::window`](crate::History::window) or its own counters)
//! and hands the values to [`Alerts::evaluate`], which returns what changed:
//!
//! ```text
//!             breach                       breach held `for`
//! inactive ───────────► pending ─────────────────────────────► firing(warning|critical)
//!    ▲                     │ no breach                             │ ▲  critical held `for`
//!    └─────────────────────┘ (PendingCancelled)                    │ └─ below critical for
//!    ▲                                                             │    `clear_after`
//!    └──── no breach for `clear_after` (Resolved) ◄────────────────┘    (SeverityChanged)
//! ```
//!
//! - A *breach* is the value strictly beyond a threshold: above it for
//!   [`Direction::Above`], below it for [`Direction::Below`] (free disk, days to expiry).
//! - `for` = 0 fires at the first breach, with no pending state.
//! - A firing alert moves between warning and critical without resolving: up once the
//!   critical threshold has been breached for `for`, down once the value has been back under
//!   it for `clear_after`.
//! - It resolves only once the value has been under every threshold for `clear_after`
//!   (hysteresis): a noisy series around a threshold keeps firing instead of flapping.
//! - **No data is no evidence**: an observation of `None` (or NaN) changes nothing — the
//!   state stays, and so do the times a condition has held since. A firing alert does not
//!   resolve because its app stopped reporting (that is an alert of its own), and a pending
//!   one does not fire on values nobody saw.
//! - Times come from the caller; a clock that steps back counts as no time elapsed.
//!
//! Only pending and firing alerts take memory: an inactive alert has no entry.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

/// An alert rule, already parsed by the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `"p95_latency"`, `"disk_free"`, …: the alert's name.
    pub name: String,
    pub warn: Option<f64>,
    pub critical: Option<f64>,
    pub direction: Direction,
    /// How long a breach must hold before the alert fires; zero fires at once.
    pub for_: Duration,
    /// How long the value must stay under the thresholds before the alert resolves (or
    /// before critical steps down to warning).
    pub clear_after: Duration,
}

/// Which side of a threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Values above the threshold breach it (latency, error rate).
    Above,
    /// Values below the threshold breach it (free disk, days until a certificate expires).
    Below,
}

/// How bad a firing alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    /// `"warning"` or `"critical"`, the words Prometheus rules use in their `severity` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Rule {
    /// The highest severity `value` breaches, if any.
    pub fn breached(&self, value: f64) -> Option<Severity> {
        let beyond = |threshold: Option<f64>| {
            threshold.is_some_and(|t| match self.direction {
                Direction::Above => value > t,
                Direction::Below => value < t,
            })
        };
        if beyond(self.critical) {
            Some(Severity::Critical)
        } else if beyond(self.warn) {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// The threshold of `severity` (NaN when the rule has none).
    pub fn threshold(&self, severity: Severity) -> f64 {
        match severity {
            Severity::Warning => self.warn,
            Severity::Critical => self.critical,
        }
        .unwrap_or(f64::NAN)
    }

    /// The threshold a value must be back under to resolve: warning's, else critical's.
    pub fn clear_threshold(&self) -> f64 {
        self.warn.or(self.critical).unwrap_or(f64::NAN)
    }
}

/// Which alert: a rule's name, the app and what in the app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    /// The rule's name.
    pub alert: String,
    pub app: String,
    /// A route, `service.instance`, a certificate's name, a backup's name; empty for the app
    /// as a whole.
    pub subject: String,
}

impl AlertKey {
    pub fn new(
        alert: impl Into<String>,
        app: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        AlertKey {
            alert: alert.into(),
            app: app.into(),
            subject: subject.into(),
        }
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Inactive,
    Pending,
    Firing(Severity),
}

impl State {
    /// `"inactive"`, `"pending"` or `"firing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing(_) => "firing",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Firing(severity) => write!(f, "firing ({severity})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// A change of state, for the daemon to record (and, for [`Change::Fired`],
/// [`Change::SeverityChanged`] and [`Change::Resolved`], to notify).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub key: AlertKey,
    pub from: State,
    pub to: State,
    /// The value that caused it.
    pub value: f64,
    /// The threshold involved: the one breached for pending and firing, the one the value
    /// is back under when resolving or cancelling.
    pub threshold: f64,
    pub at: SystemTime,
}

/// What a [`Transition`] means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pending,
    PendingCancelled,
    Fired,
    SeverityChanged,
    Resolved,
}

impl Transition {
    pub fn change(&self) -> Change {
        match (self.from, self.to) {
            (State::Firing(_), State::Firing(_)) => Change::SeverityChanged,
            (_, State::Firing(_)) => Change::Fired,
            (State::Firing(_), _) => Change::Resolved,
            (State::Pending, State::Inactive) => Change::PendingCancelled,
            _ => Change::Pending,
        }
    }
}

/// A pending or firing alert, as listed by [`Alerts::all`].
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub key: AlertKey,
    /// [`State::Pending`] or [`State::Firing`].
    pub state: State,
    /// The firing severity; for a pending alert, the one its latest value breaches.
    pub severity: Severity,
    /// The latest value observed.
    pub value: f64,
    /// The threshold of `severity`.
    pub threshold: f64,
    /// When it became pending, or started firing (a severity change keeps this).
    pub since: SystemTime,
    /// When it was last notified: fired, changed severity, or was last reminded of.
    pub last_notified: Option<SystemTime>,
}

/// The alert engine: the state of every pending and firing alert.
#[derive(Debug, Default)]
pub struct Alerts {
    tracks: BTreeMap<AlertKey, Track>,
}

/// One alert that is not inactive.
#[derive(Debug, Clone)]
struct Track {
    state: State,
    since: SystemTime,
    severity: Severity,
    value: f64,
    threshold: f64,
    last_notified: Option<SystemTime>,
    /// Since when the value has continuously breached any threshold / the critical one /
    /// no threshold / not the critical one.
    breach: Option<SystemTime>,
    critical: Option<SystemTime>,
    clear: Option<SystemTime>,
    calm: Option<SystemTime>,
}

impl Alerts {
    pub fn new() -> Alerts {
        Alerts::default()
    }

    /// Applies one round of observations at `now`; returns the transitions, in the order of
    /// the observations. Keys not observed keep their state (see also [`Alerts::retain`]).
    pub fn evaluate<'r>(
        &mut self,
        now: SystemTime,
        observations: impl IntoIterator<Item = (AlertKey, &'r Rule, Option<f64>)>,
    ) -> Vec<Transition> {
        let mut transitions = Vec::new();
        for (key, rule, value) in observations {
            let Some(value) = value.filter(|v| !v.is_nan()) else {
                continue;
            };
            let level = rule.breached(value);
            let track = match self.tracks.get_mut(&key) {
                Some(track) => track,
                None if level.is_none() => continue,
                None => self
                    .tracks
                    .entry(key.clone())
                    .or_insert_with(|| Track::new(now)),
            };
            let from = track.state;
            track.observe(rule, value, level, now);
            let to = track.state;
            if from != to {
                transitions.push(Transition {
                    key: key.clone(),
                    from,
                    to,
                    value,
                    threshold: track.threshold,
                    at: now,
                });
            }
            if to == State::Inactive {
                self.tracks.remove(&key);
            }
        }
        transitions
    }

    /// Every pending and firing alert, by key.
    pub fn all(&self) -> Vec<Alert> {
        self.tracks
            .iter()
            .map(|(key, track)| track.alert(key))
            .collect()
    }

    pub fn firing(&self) -> Vec<Alert> {
        self.listed(|state| matches!(state, State::Firing(_)))
    }

    pub fn pending(&self) -> Vec<Alert> {
        self.listed(|state| state == State::Pending)
    }

    /// The firing alerts last notified `every` or longer ago, marked as notified at `now`
    /// (the caller sends the reminders). A zero `every` means no reminders.
    pub fn due_reminders(&mut self, now: SystemTime, every: Duration) -> Vec<Alert> {
        if every.is_zero() {
            return Vec::new();
        }
        let mut due = Vec::new();
        for (key, track) in &mut self.tracks {
            let firing = matches!(track.state, State::Firing(_));
            if firing
                && track
                    .last_notified
                    .is_none_or(|last| elapsed(last, now) >= every)
            {
                track.last_notified = Some(now);
                due.push(track.alert(key));
            }
        }
        due
    }

    /// Forgets the alerts `keep` refuses (an app removed, a rule deleted); returns their
    /// transitions to inactive, so resolutions can still be recorded and sent.
    pub fn retain(
        &mut self,
        now: SystemTime,
        mut keep: impl FnMut(&AlertKey) -> bool,
    ) -> Vec<Transition> {
        let mut gone = Vec::new();
        self.tracks.retain(|key, track| {
            let kept = keep(key);
            if !kept {
                gone.push(Transition {
                    key: key.clone(),
                    from: track.state,
                    to: State::Inactive,
                    value: track.value,
                    threshold: track.threshold,
                    at: now,
                });
            }
            kept
        });
        gone
    }

    fn listed(&self, wanted: impl Fn(State) -> bool) -> Vec<Alert> {
        self.tracks
            .iter()
            .filter(|(_, track)| wanted(track.state))
            .map(|(key, track)| track.alert(key))
            .collect()
    }
}

impl Track {
    fn new(now: SystemTime) -> Track {
        Track {
            state: State::Inactive,
            since: now,
            severity: Severity::Warning,
            value: f64::NAN,
            threshold: f64::NAN,
            last_notified: None,
            breach: None,
            critical: None,
            clear: None,
            calm: None,
        }
    }

    /// One step of the state machine (see the module's doc).
    fn observe(&mut self, rule: &Rule, value: f64, level: Option<Severity>, now: SystemTime) {
        self.value = value;
        let is_critical = level == Some(Severity::Critical);
        hold(&mut self.breach, level.is_some(), now);
        hold(&mut self.clear, level.is_none(), now);
        hold(&mut self.critical, is_critical, now);
        hold(&mut self.calm, !is_critical, now);
        let held =
            |since: Option<SystemTime>, d: Duration| since.is_some_and(|s| elapsed(s, now) >= d);

        let next = match self.state {
            State::Inactive | State::Pending => match level {
                None => State::Inactive,
                Some(_) if held(self.breach, rule.for_) => {
                    State::Firing(if held(self.critical, rule.for_) {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    })
                }
                Some(_) => State::Pending,
            },
            State::Firing(_) if held(self.clear, rule.clear_after) => State::Inactive,
            State::Firing(Severity::Warning) if held(self.critical, rule.for_) => {
                State::Firing(Severity::Critical)
            }
            State::Firing(Severity::Critical) if held(self.calm, rule.clear_after) => {
                State::Firing(Severity::Warning)
            }
            firing @ State::Firing(_) => firing,
        };

        // `since` is when it became pending or started firing; a severity change keeps it.
        if matches!(
            (self.state, next),
            (State::Inactive, State::Pending | State::Firing(_))
                | (State::Pending, State::Firing(_))
        ) {
            self.since = now;
        }
        if matches!(next, State::Firing(_)) && next != self.state {
            self.last_notified = Some(now);
        }
        (self.severity, self.threshold) = match (next, level) {
            (State::Firing(severity), _) | (State::Pending, Some(severity)) => {
                (severity, rule.threshold(severity))
            }
            _ => (self.severity, rule.clear_threshold()),
        };
        self.state = next;
    }

    fn alert(&self, key: &AlertKey) -> Alert {
        Alert {
            key: key.clone(),
            state: self.state,
            severity: self.severity,
            value: self.value,
            threshold: self.threshold,
            since: self.since,
            last_notified: self.last_notified,
        }
    }
}

/// Keeps `since` while `condition` holds (starting it at `now`), clears it otherwise.
fn hold(since: &mut Option<SystemTime>, condition: bool, now: SystemTime) {
    if condition {
        since.get_or_insert(now);
    } else {
        *since = None;
    }
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

#[cfg(test)]
mod tests;
