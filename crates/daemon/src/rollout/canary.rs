//! Canary steps (`[deploy] canary = ["5%", "25%", "100%"]`, `step`): before the switch, the
//! new release takes a growing share of the clients (by address, so a client stays on one
//! side) while the running release keeps the rest; each step is judged like the watch window,
//! against what the running release answers meanwhile. The last share is the switch itself.
//! Nothing is committed in the store until then: after a crash the running release serves.

use api::{DeployKind, Gate, Phase, Step};
use proxy::Share;
use spec::CanaryStep;

use super::judge::{Baseline, Judged, Tally, Until};
use super::progress::Rollout;
use crate::core::Core;
use crate::failure::Failure;
use crate::release::{Canary, Release};

impl Core {
    /// Run the canary steps of `r` with `new` (started, ready, smoke-checked); gives it back
    /// for the switch when every step passed. A bad step sends its clients back and stops
    /// `new`.
    pub(super) async fn canary(&self, r: &Rollout<'_>, new: Release) -> Result<Release, Failure> {
        let d = &r.spec.deploy;
        let (Some(step), [shares @ .., _last]) = (d.step, d.canary.as_slice()) else {
            return Ok(new);
        };
        if r.kind != DeployKind::Deploy || shares.is_empty() || self.serving_nothing(&r.app) {
            return Ok(new);
        }
        self.step(r, Step::Canary).await;
        // The release has clients from now on: its time to restore counts from here.
        if let Err(err) = self.db.set_switched(r.id).await {
            tracing::warn!(deploy = r.id, error = %err, "record the first canary step");
        }
        let steps = d.canary.len() as u32;
        self.apps().entry(r.app.clone()).or_default().canary = Some(Canary {
            release: new,
            share: Share::of(0.0),
            step: 0,
            steps,
        });
        for (i, &share) in shares.iter().enumerate() {
            let n = i as u32 + 1;
            let what = format!(
                "canary step {n} of {steps} ({})",
                super::gates::percent(share)
            );
            let (mut tally, old) = {
                let mut apps = self.apps();
                let a = apps
                    .get_mut(&r.app)
                    .expect("the app's state holds its canary");
                let canary = a.canary.as_mut().expect("the canary is in place");
                canary.share = Share::of(share);
                canary.step = n;
                let tally = Tally::of(&canary.release);
                (tally, a.running.as_ref().map(Tally::of))
            };
            self.publish_routes();
            let until = match step {
                CanaryStep::Time(t) => Until::Elapsed(t),
                CanaryStep::Requests(k) => {
                    Until::Answered(u64::from(k), spec::DeploySpec::MAX_CANARY_STEP)
                }
            };
            r.progress.phase(
                Phase::Canary,
                format!(
                    "{what}: {} of clients on {} for {}",
                    super::gates::percent(share),
                    r.release,
                    match step {
                        CanaryStep::Time(t) => format!("{}s", t.as_secs()),
                        CanaryStep::Requests(k) => format!("{k} of its answers"),
                    }
                ),
            );
            let judged = Judged {
                gate: Gate::Canary,
                what: &what,
                until,
                max_error_rate: d.max_error_rate,
                baseline: old.map_or(Baseline::None, Baseline::Meanwhile),
            };
            match self.judge(r, &mut tally, judged).await {
                Ok(c) => r.progress.phase(
                    Phase::Canary,
                    format!("{what} passed: {} answers, {} 5xx", c.answered, c.errors),
                ),
                Err(mut f) => {
                    let back = self.take_canary(&r.app);
                    self.publish_routes();
                    if let Some(canary) = back {
                        self.stop_members(canary.members).await;
                    }
                    let back_on = self
                        .with_running(&r.app, |r| format!("release {}", r.id))
                        .unwrap_or_default();
                    f.reason = format!("{}; its clients are back on {back_on}", f.reason);
                    return Err(f);
                }
            }
        }
        // Taken out without a publish: the switch publishes the table without the split.
        self.take_canary(&r.app).ok_or_else(|| gone(r))
    }

    fn take_canary(&self, app: &str) -> Option<Release> {
        self.apps()
            .get_mut(app)
            .and_then(|a| a.canary.take())
            .map(|c| c.release)
    }

    fn serving_nothing(&self, app: &str) -> bool {
        self.with_running(app, |_| ()).is_none()
    }
}

/// The canary was taken from its rollout: only the daemon's shutdown (`stop_all`) does that.
fn gone(r: &Rollout<'_>) -> Failure {
    Failure::new(
        Gate::Canary,
        format!(
            "the canary of {} {} was stopped (the daemon is stopping)",
            r.app, r.release
        ),
    )
}
