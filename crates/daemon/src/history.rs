//! Figures over the deploy history: deploy frequency, change-failure rate, time to restore.
//! Pure functions over the store's records, so they are tested with plain data.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use api::{AppSummary, DeployKind, DeployRecord, DeployResult, Step};
use store::Deploy;

const WINDOW: Duration = Duration::from_secs(30 * 86_400);

pub fn record(d: &Deploy) -> DeployRecord {
    DeployRecord {
        id: d.id,
        kind: d.kind,
        app: d.app.clone(),
        release: d.release.clone(),
        from_release: d.from_release.clone(),
        user: d.user.clone(),
        started: supervisor::logs::format_time(d.started_at),
        duration_ms: d
            .finished_at
            .and_then(|f| f.duration_since(d.started_at).ok())
            .map(|x| x.as_millis() as u64),
        drain_ms: d
            .drained_at
            .zip(d.finished_at)
            .and_then(|(drained, finished)| drained.duration_since(finished).ok())
            .map(|x| x.as_millis() as u64),
        result: d.result,
        step: d.step,
        gate: d.gate,
        reason: d.reason.clone(),
    }
}

/// A rollback by hand this soon after a release took traffic says the release was bad.
pub const MANUAL_ROLLBACK_WITHIN: Duration = Duration::from_secs(3600);

/// One summary per app. `deploys` may be in any order.
///
/// The definitions (README's deploy section says the same):
/// - a *change* is a deploy or restart that took traffic (passed the switch);
/// - a change *failed* when it was rolled back automatically (a bad canary step, watch
///   window or worker start) or by hand within [`MANUAL_ROLLBACK_WITHIN`] of
///   its switch (the first rollout that took traffic away from it was a rollback);
/// - its *time to restore* runs from its switch (berth does not record the first bad answer)
///   to traffic back on a good release: the end of the automatic rollback (its result is
///   recorded after the switch back), or the switch of the manual rollback;
/// - a deploy refused before any client reached it (build, secrets, start, health, smoke
///   checks) was *caught before traffic*: not a change, not a failure, no incident;
/// - deploy frequency counts changes.
///
/// Records made before berth recorded the switch fall back to the rollout's start for the
/// bad release and to the result's time for a rollback.
pub fn summarize(deploys: &[Deploy], now: SystemTime) -> Vec<AppSummary> {
    let mut by_app: BTreeMap<&str, Vec<&Deploy>> = BTreeMap::new();
    for d in deploys {
        by_app.entry(&d.app).or_default().push(d);
    }
    by_app
        .into_iter()
        .map(|(app, mut list)| {
            list.sort_by_key(|d| (d.started_at, d.id));
            summary(app, &list, now)
        })
        .collect()
}

/// Whether a rollout put its release on traffic (for a while, at least).
fn went_live(d: &Deploy) -> bool {
    d.switched_at.is_some()
        || matches!(d.result, DeployResult::Ok | DeployResult::RolledBack)
        || (d.result == DeployResult::Interrupted
            && matches!(
                d.step,
                Step::Canary | Step::Watch | Step::Workers | Step::Drain
            ))
}

/// When a rollout's release took traffic, as best recorded.
fn switched(d: &Deploy) -> SystemTime {
    d.switched_at.unwrap_or(d.started_at)
}

fn summary(app: &str, list: &[&Deploy], now: SystemTime) -> AppSummary {
    let is_change = |d: &Deploy| d.kind != DeployKind::Rollback;
    let changes: Vec<&Deploy> = list
        .iter()
        .copied()
        .filter(|d| is_change(d) && went_live(d))
        .collect();
    let caught_before_traffic = list
        .iter()
        .filter(|d| is_change(d) && d.result == DeployResult::Failed && !went_live(d))
        .count() as u32;
    let rollbacks = list
        .iter()
        .filter(|d| d.kind == DeployKind::Rollback)
        .count() as u32;

    // Each failed change and how long until traffic was on a good release again.
    let restores: Vec<Option<Duration>> = changes
        .iter()
        .filter_map(|d| {
            if d.result == DeployResult::RolledBack {
                return Some(
                    d.finished_at
                        .and_then(|end| end.duration_since(switched(d)).ok()),
                );
            }
            // The first rollout after it that took traffic away from its release.
            let exit = list.iter().find(|x| {
                (x.started_at, x.id) > (d.started_at, d.id)
                    && x.result == DeployResult::Ok
                    && x.from_release.as_deref() == Some(d.release.as_str())
            })?;
            let soon = exit
                .started_at
                .duration_since(switched(d))
                .is_ok_and(|t| t <= MANUAL_ROLLBACK_WITHIN);
            (exit.kind == DeployKind::Rollback && soon).then(|| {
                exit.switched_at
                    .or(exit.finished_at)
                    .and_then(|back| back.duration_since(switched(d)).ok())
            })
        })
        .collect();

    let since = now.checked_sub(WINDOW).unwrap_or(SystemTime::UNIX_EPOCH);
    let recent: Vec<_> = changes.iter().filter(|d| d.started_at >= since).collect();
    let deploys_per_day = match recent.first() {
        None => 0.0,
        Some(first) => {
            let span = now.duration_since(first.started_at).unwrap_or_default();
            let days = (span.as_secs_f64() / 86_400.0).max(1.0);
            recent.len() as f64 / days
        }
    };
    let change_failure_rate = if changes.is_empty() {
        0.0
    } else {
        restores.len() as f64 / changes.len() as f64
    };
    let measured: Vec<f64> = restores
        .iter()
        .flatten()
        .map(Duration::as_secs_f64)
        .collect();
    let mean_time_to_restore_secs =
        (!measured.is_empty()).then(|| measured.iter().sum::<f64>() / measured.len() as f64);

    AppSummary {
        app: app.to_owned(),
        deploys: changes.len() as u32,
        failed_changes: restores.len() as u32,
        caught_before_traffic,
        rollbacks,
        deploys_per_day,
        change_failure_rate,
        mean_time_to_restore_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Gate;
    use std::time::UNIX_EPOCH;

    const DAY: u64 = 86_400;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A rollout of `release` from `from` that started at `start`, switched `switch` seconds
    /// later (`None`: never) and finished `took` seconds after its start.
    struct R {
        kind: &'static str,
        release: &'static str,
        from: Option<&'static str>,
        start: u64,
        switch: Option<u64>,
        took: u64,
        result: &'static str,
        gate: Option<Gate>,
    }

    fn deploys(list: &[R]) -> Vec<Deploy> {
        list.iter()
            .enumerate()
            .map(|(i, r)| Deploy {
                id: i as i64 + 1,
                kind: r.kind.parse().unwrap(),
                app: "shop".to_owned(),
                release: r.release.to_owned(),
                from_release: r.from.map(str::to_owned),
                user: "ops".to_owned(),
                started_at: at(r.start),
                switched_at: r.switch.map(|s| at(r.start + s)),
                finished_at: Some(at(r.start + r.took)),
                drained_at: None,
                step: Step::Done,
                result: r.result.parse().unwrap(),
                gate: r.gate,
                reason: None,
            })
            .collect()
    }

    fn ok(kind: &'static str, release: &'static str, from: Option<&'static str>, start: u64) -> R {
        // 10 s to build and start, then a 20 s watch window.
        R {
            kind,
            release,
            from,
            start,
            switch: Some(10),
            took: 30,
            result: "ok",
            gate: None,
        }
    }

    #[test]
    fn figures_of_a_scripted_sequence() {
        let now = at(10 * DAY);
        let list = deploys(&[
            ok("deploy", "r1", None, 0),
            // Refused at the build: caught before traffic.
            R {
                switch: None,
                took: 5,
                result: "failed",
                gate: Some(Gate::Build),
                ..ok("deploy", "r2", Some("r1"), DAY)
            },
            // Refused at the start gate (health): caught before traffic.
            R {
                switch: None,
                took: 8,
                result: "failed",
                gate: Some(Gate::Start),
                ..ok("deploy", "r3", Some("r1"), DAY + 100)
            },
            // Failed its watch window; traffic back on r1 12 s after its switch.
            R {
                took: 22,
                result: "rolled-back",
                gate: Some(Gate::Watch),
                ..ok("deploy", "r4", Some("r1"), 2 * DAY)
            },
            ok("deploy", "r5", Some("r1"), 3 * DAY), // switched at 3d+10
            // Rolled back by hand 10 min later; its own switch 4 s after its start, then its
            // watch window: restored in 600 + 4 - 10 = 594 s, not the 30 s it took.
            R {
                switch: Some(4),
                ..ok("rollback", "r1", Some("r5"), 3 * DAY + 600)
            },
            ok("deploy", "r6", Some("r1"), 4 * DAY),
            // Rolled back by hand two hours later: not a failed change.
            ok("rollback", "r1", Some("r6"), 4 * DAY + 7200),
            ok("restart", "r7", Some("r1"), 5 * DAY),
            // Interrupted during its watch window: it went live; not a failure.
            R {
                result: "interrupted",
                ..ok("deploy", "r8", Some("r7"), 6 * DAY)
            },
        ]);
        let s = summarize(&list, now);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!(
            (
                s.deploys,
                s.failed_changes,
                s.caught_before_traffic,
                s.rollbacks
            ),
            (6, 2, 2, 2)
        );
        assert!(
            (s.deploys_per_day - 0.6).abs() < 1e-9,
            "{}",
            s.deploys_per_day
        );
        assert!(
            (s.change_failure_rate - 2.0 / 6.0).abs() < 1e-9,
            "{}",
            s.change_failure_rate
        );
        assert_eq!(s.mean_time_to_restore_secs, Some((12.0 + 594.0) / 2.0));
    }

    #[test]
    fn refusals_alone_are_no_changes_and_no_incidents() {
        let list = deploys(&[
            ok("deploy", "r1", None, 0),
            R {
                switch: None,
                took: 5,
                result: "failed",
                gate: Some(Gate::Start),
                ..ok("deploy", "r2", Some("r1"), 100)
            },
        ]);
        let s = &summarize(&list, at(DAY))[0];
        assert_eq!(
            (s.deploys, s.failed_changes, s.caught_before_traffic),
            (1, 0, 1)
        );
        assert_eq!(s.change_failure_rate, 0.0);
        assert_eq!(s.mean_time_to_restore_secs, None);
    }

    #[test]
    fn records_without_a_switch_instant_use_the_start() {
        // An automatic rollback recorded before berth kept the switch: from its start.
        let list = deploys(&[
            ok("deploy", "r1", None, 0),
            R {
                switch: None,
                took: 40,
                result: "rolled-back",
                gate: Some(Gate::Smoke),
                ..ok("deploy", "r2", Some("r1"), 100)
            },
        ]);
        let s = &summarize(&list, at(DAY))[0];
        assert_eq!((s.deploys, s.failed_changes), (2, 1));
        assert_eq!(s.mean_time_to_restore_secs, Some(40.0));
    }

    #[test]
    fn smoke_refusals_are_caught_before_traffic_and_a_bad_canary_step_is_a_failed_change() {
        let list = deploys(&[
            ok("deploy", "r1", None, 0),
            // Smoke checks run before the switch now.
            R {
                switch: None,
                took: 6,
                result: "failed",
                gate: Some(Gate::Smoke),
                ..ok("deploy", "r2", Some("r1"), 100)
            },
            // Its first canary step at 8 s, back on r1 at 20 s.
            R {
                switch: Some(8),
                took: 20,
                result: "rolled-back",
                gate: Some(Gate::Canary),
                ..ok("deploy", "r3", Some("r1"), 200)
            },
        ]);
        let s = &summarize(&list, at(DAY))[0];
        assert_eq!(
            (s.deploys, s.failed_changes, s.caught_before_traffic),
            (2, 1, 1)
        );
        assert_eq!(s.mean_time_to_restore_secs, Some(12.0));
    }

    #[test]
    fn nothing_yet() {
        let s = summarize(&[], SystemTime::now());
        assert!(s.is_empty());
    }
}
