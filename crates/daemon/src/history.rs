//! Figures over the deploy history: deploy frequency, change-failure rate, time to restore.
//! Pure functions over the store's records, so they are tested with plain data.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use api::{AppSummary, DeployKind, DeployRecord, DeployResult};
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

/// One summary per app. `deploys` may be in any order.
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

fn summary(app: &str, list: &[&Deploy], now: SystemTime) -> AppSummary {
    let is_failure =
        |d: &Deploy| matches!(d.result, DeployResult::Failed | DeployResult::RolledBack);
    let is_good = |d: &Deploy| d.result == DeployResult::Ok;
    let deploys: Vec<&&Deploy> = list
        .iter()
        .filter(|d| d.kind == DeployKind::Deploy)
        .collect();
    let rollbacks = list
        .iter()
        .filter(|d| d.kind == DeployKind::Rollback)
        .count() as u32;

    let since = now.checked_sub(WINDOW).unwrap_or(SystemTime::UNIX_EPOCH);
    let recent: Vec<_> = deploys.iter().filter(|d| d.started_at >= since).collect();
    let deploys_per_day = match recent.first() {
        None => 0.0,
        Some(first) => {
            let span = now.duration_since(first.started_at).unwrap_or_default();
            let days = (span.as_secs_f64() / 86_400.0).max(1.0);
            recent.len() as f64 / days
        }
    };

    let finished: Vec<_> = deploys
        .iter()
        .filter(|d| is_good(d) || is_failure(d))
        .collect();
    let change_failure_rate = if finished.is_empty() {
        0.0
    } else {
        finished.iter().filter(|d| is_failure(d)).count() as f64 / finished.len() as f64
    };

    // A failure (or a manual rollback, which says something was wrong) opens an incident; the
    // next good deploy or rollback closes it.
    let mut restores = Vec::new();
    let mut open: Option<SystemTime> = None;
    for d in list {
        let bad = is_failure(d) || (d.kind == DeployKind::Rollback && is_good(d));
        if bad && open.is_none() {
            open = Some(d.started_at);
        }
        if is_good(d)
            && let (Some(start), Some(end)) = (open, d.finished_at)
            && (d.kind == DeployKind::Rollback || !bad)
        {
            restores.push(end.duration_since(start).unwrap_or_default().as_secs_f64());
            open = None;
        }
    }
    let mean_time_to_restore_secs =
        (!restores.is_empty()).then(|| restores.iter().sum::<f64>() / restores.len() as f64);

    AppSummary {
        app: app.to_owned(),
        deploys: deploys.len() as u32,
        rollbacks,
        deploys_per_day,
        change_failure_rate,
        mean_time_to_restore_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn d(id: i64, kind: &str, at: u64, secs: u64, result: &str) -> Deploy {
        Deploy {
            id,
            kind: kind.parse().unwrap(),
            app: "shop".to_owned(),
            release: format!("r{id}"),
            from_release: None,
            user: "ops".to_owned(),
            started_at: UNIX_EPOCH + Duration::from_secs(at),
            switched_at: None,
            finished_at: Some(UNIX_EPOCH + Duration::from_secs(at + secs)),
            drained_at: None,
            step: api::Step::Done,
            result: result.parse().unwrap(),
            gate: None,
            reason: None,
        }
    }

    #[test]
    fn figures() {
        let day = 86_400;
        let now = UNIX_EPOCH + Duration::from_secs(10 * day);
        let list = [
            d(1, "deploy", 0, 10, "ok"),
            d(2, "deploy", day, 10, "failed"), // incident opens at day
            d(3, "deploy", day + 100, 20, "ok"), // restored at day+120
            d(4, "deploy", 2 * day, 10, "ok"),
            d(5, "rollback", 2 * day + 50, 10, "ok"), // a rollback: incident and its restore, 10 s
            d(6, "deploy", 3 * day, 10, "rolled-back"),
            d(7, "deploy", 4 * day, 10, "interrupted"),
        ];
        let s = summarize(&list, now);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!((s.deploys, s.rollbacks), (6, 1));
        assert!(
            (s.deploys_per_day - 0.6).abs() < 1e-9,
            "{}",
            s.deploys_per_day
        );
        // finished deploys: ok, failed, ok, ok, rolled-back = 2 of 5
        assert!((s.change_failure_rate - 0.4).abs() < 1e-9);
        assert_eq!(s.mean_time_to_restore_secs, Some((120.0 + 10.0) / 2.0));
    }

    #[test]
    fn nothing_yet() {
        let s = summarize(&[], SystemTime::now());
        assert!(s.is_empty());
    }
}
