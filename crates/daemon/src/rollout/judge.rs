//! Judging a release while it has traffic (the watch window, each canary step): a crash of
//! any of its instances, or too large a share of 5xx over the last
//! [`DeploySpec::WATCH_WINDOW`] or since the judging began, against the previous release's
//! own share (the baseline).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::Gate;
use proxy::Upstream;
use spec::DeploySpec;
use supervisor::EventKind;
use tokio::sync::broadcast::error::RecvError;

use super::gates::percent;
use super::progress::Rollout;
use crate::core::Core;
use crate::failure::Failure;
use crate::release::Release;

/// How often the error rate is looked at.
const TICK: Duration = Duration::from_millis(250);

/// Answers and 5xx of one release's instances, sampled every [`TICK`] (the proxy counts them
/// per instance as each response finishes).
pub(super) struct Tally {
    release: String,
    members: Vec<(String, u32, Arc<Upstream>)>,
    /// The counts when judging began, per member.
    start: Vec<(u64, u64)>,
    /// (when, answered, 5xx) since judging began, the oldest dropped once a newer one is
    /// a whole window old.
    samples: VecDeque<(Instant, u64, u64)>,
}

/// Answered requests and how many were 5xx.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Counts {
    pub answered: u64,
    pub errors: u64,
}

impl Counts {
    fn rate(self) -> f64 {
        if self.answered == 0 {
            0.0
        } else {
            self.errors as f64 / self.answered as f64
        }
    }

    fn add(self, (answered, errors): (u64, u64)) -> Counts {
        Counts {
            answered: self.answered + answered,
            errors: self.errors + errors,
        }
    }

    fn enough(self) -> bool {
        self.answered >= DeploySpec::ERROR_RATE_MIN_REQUESTS
    }
}

impl Tally {
    /// Start counting `release`'s answers from now.
    pub fn of(release: &Release) -> Tally {
        let members: Vec<_> = release
            .members
            .iter()
            .map(|m| (m.service.clone(), m.index, m.upstream.clone()))
            .collect();
        let start = members.iter().map(|(_, _, u)| u.outcomes()).collect();
        let mut tally = Tally {
            release: release.id.clone(),
            members,
            start,
            samples: VecDeque::new(),
        };
        tally.sample(Instant::now());
        tally
    }

    /// The counts of a release over its instances' whole life: what it answered before the
    /// switch, as the baseline of the release replacing it.
    pub fn lifetime(release: &Release) -> Counts {
        release
            .members
            .iter()
            .map(|m| m.upstream.outcomes())
            .fold(Counts::default(), Counts::add)
    }

    /// Each member's answered and 5xx since judging began.
    fn deltas(&self) -> impl Iterator<Item = (&str, u32, (u64, u64))> {
        self.members
            .iter()
            .zip(&self.start)
            .map(|((service, index, u), &(a0, e0))| {
                let (a, e) = u.outcomes();
                (
                    service.as_str(),
                    *index,
                    (a.saturating_sub(a0), e.saturating_sub(e0)),
                )
            })
    }

    fn now(&self) -> Counts {
        self.deltas()
            .map(|(.., c)| c)
            .fold(Counts::default(), Counts::add)
    }

    fn sample(&mut self, at: Instant) {
        let c = self.now();
        self.samples.push_back((at, c.answered, c.errors));
        while self
            .samples
            .get(1)
            .is_some_and(|&(t, ..)| at.duration_since(t) >= DeploySpec::WATCH_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Since judging began.
    pub fn total(&self) -> Counts {
        self.samples
            .back()
            .map(|&(_, answered, errors)| Counts { answered, errors })
            .unwrap_or_default()
    }

    /// Over the last window (or less, early on): the counts and the time they cover.
    fn window(&self) -> (Counts, Duration) {
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, a0, e0)), Some(&(t1, a1, e1))) => (
                Counts {
                    answered: a1 - a0,
                    errors: e1 - e0,
                },
                t1.duration_since(t0),
            ),
            _ => (Counts::default(), Duration::ZERO),
        }
    }

    /// "; most from service web instance 0 (12 of 40)", since judging began.
    fn worst(&self) -> String {
        self.deltas()
            .filter(|(.., (_, e))| *e > 0)
            .max_by_key(|(.., (_, e))| *e)
            .map(|(service, index, (a, e))| {
                format!("; most from service {service} instance {index} ({e} of {a})")
            })
            .unwrap_or_default()
    }
}

/// What the new release's error rate is held against: the previous release's own.
pub(super) enum Baseline {
    /// Nothing served before.
    None,
    /// What it answered before the switch.
    Before { release: String, counts: Counts },
    /// What it answers meanwhile (canary steps: the rest of the clients).
    Meanwhile(Tally),
}

impl Baseline {
    /// The highest share of 5xx allowed, and how it was set, in words.
    pub fn limit(&self, max: f64) -> (f64, String) {
        let (release, counts, when) = match self {
            Baseline::None => return (max, format!("max_error_rate {}", percent(max))),
            Baseline::Before { release, counts } => (release, *counts, "before the switch"),
            Baseline::Meanwhile(t) => (&t.release, t.total(), "meanwhile"),
        };
        let said = format!(
            "{release} answered {} of {} with 5xx {when}",
            percent(counts.rate()),
            counts.answered
        );
        if counts.enough() && 2.0 * counts.rate() > max {
            (
                2.0 * counts.rate(),
                format!(
                    "twice the baseline: {said}; max_error_rate {}",
                    percent(max)
                ),
            )
        } else {
            (
                max,
                format!("max_error_rate {}; baseline: {said}", percent(max)),
            )
        }
    }

    fn sample(&mut self, at: Instant) {
        if let Baseline::Meanwhile(t) = self {
            t.sample(at);
        }
    }
}

/// How long a judgement lasts.
#[derive(Clone, Copy)]
pub(super) enum Until {
    Elapsed(Duration),
    /// The release has answered this many requests (or the time is up).
    Answered(u64, Duration),
}

/// One judgement: `what` names it in messages ("watch window", "canary step 2 (25%)").
pub(super) struct Judged<'a> {
    pub gate: Gate,
    pub what: &'a str,
    pub until: Until,
    pub max_error_rate: f64,
    pub baseline: Baseline,
}

impl Core {
    /// Judge the release `tally` counts for, as `j` says. Returns its counts when it passed.
    pub(super) async fn judge(
        &self,
        r: &Rollout<'_>,
        tally: &mut Tally,
        mut j: Judged<'_>,
    ) -> Result<Counts, Failure> {
        let mut events = self.supervisor.events();
        let limit = match j.until {
            Until::Elapsed(d) | Until::Answered(_, d) => d,
        };
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(TICK);
        loop {
            let event = tokio::select! {
                () = &mut deadline => break,
                _ = tick.tick() => {
                    let now = Instant::now();
                    tally.sample(now);
                    j.baseline.sample(now);
                    self.error_rate(r, tally, &j).await?;
                    if let Until::Answered(n, _) = j.until && tally.total().answered >= n {
                        break;
                    }
                    continue;
                }
                ev = events.recv() => match ev {
                    Ok(ev) => ev,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                },
            };
            if event.key.app != r.app || event.key.release != r.release {
                continue;
            }
            if let EventKind::Exited(exit) = event.kind {
                return Err(Failure::new(
                    j.gate,
                    format!(
                        "{}: service {} instance {} of {} {} exited ({exit})",
                        j.what, event.key.service, event.key.instance, r.app, r.release
                    ),
                )
                .hint(format!("see `berth logs {} {}`", r.app, event.key.service))
                .tail(self.log_tail(&r.app, &r.release).await));
            }
        }
        let now = Instant::now();
        tally.sample(now);
        j.baseline.sample(now);
        self.error_rate(r, tally, &j).await?;
        Ok(tally.total())
    }

    /// Fails when the last window, or everything since judging began, has more 5xx than the
    /// limit (each once it holds enough answers).
    async fn error_rate(
        &self,
        r: &Rollout<'_>,
        tally: &Tally,
        j: &Judged<'_>,
    ) -> Result<(), Failure> {
        let (limit, why) = j.baseline.limit(j.max_error_rate);
        let (window, covered) = tally.window();
        let total = tally.total();
        let over = |c: Counts| c.enough() && c.errors as f64 > limit * c.answered as f64;
        let (counts, when) = if over(window) {
            (window, format!("in the last {}s", covered.as_secs().max(1)))
        } else if over(total) {
            (total, format!("in the {} so far", j.what))
        } else {
            return Ok(());
        };
        Err(Failure::new(
            j.gate,
            format!(
                "{}: {} of {} requests to {} {} {when} answered 5xx ({}), above {} ({why}){}",
                j.what,
                counts.errors,
                counts.answered,
                r.app,
                r.release,
                percent(counts.rate()),
                percent(limit),
                tally.worst(),
            ),
        )
        .hint(format!(
            "see `berth logs {}`; raise [deploy] max_error_rate if this rate is normal for the app",
            r.app
        ))
        .tail(self.log_tail(&r.app, &r.release).await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(answered: u64, errors: u64) -> Counts {
        Counts { answered, errors }
    }

    fn before(answered: u64, errors: u64) -> Baseline {
        Baseline::Before {
            release: "r1".into(),
            counts: counts(answered, errors),
        }
    }

    #[test]
    fn the_limit_is_max_error_rate_or_twice_a_noisier_baseline() {
        // A quiet app: the operator's limit.
        let (limit, why) = before(1000, 10).limit(0.10);
        assert_eq!(limit, 0.10);
        assert_eq!(
            why,
            "max_error_rate 10%; baseline: r1 answered 1% of 1000 with 5xx before the switch"
        );
        // A noisy app at 8%: twice that.
        let (limit, why) = before(1000, 80).limit(0.10);
        assert!((limit - 0.16).abs() < 1e-9);
        assert!(
            why.starts_with("twice the baseline: r1 answered 8% of 1000"),
            "{why}"
        );
        // Too few answers to be a baseline.
        assert_eq!(before(10, 9).limit(0.10).0, 0.10);
        assert_eq!(Baseline::None.limit(0.05).0, 0.05);
    }
}
