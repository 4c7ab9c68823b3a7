//! Every path of the state machine, each as a series of observations and the transitions it
//! must give, written `t: from → to, value (threshold)` with `t` in seconds.

use std::time::UNIX_EPOCH;

use super::*;

fn rule(
    direction: Direction,
    warn: Option<f64>,
    critical: Option<f64>,
    for_: u64,
    clear_after: u64,
) -> Rule {
    Rule {
        name: "p95_latency".into(),
        warn,
        critical,
        direction,
        for_: Duration::from_secs(for_),
        clear_after: Duration::from_secs(clear_after),
    }
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn key() -> AlertKey {
    AlertKey::new("p95_latency", "shop", "web /api")
}

/// Feeds `steps` (second, value) to a fresh engine and checks the transitions it returns.
fn check(rule: &Rule, steps: &[(u64, Option<f64>)], expected: &[&str]) -> Alerts {
    let mut alerts = Alerts::new();
    let mut got = Vec::new();
    for &(t, value) in steps {
        for tr in alerts.evaluate(at(t), [(key(), rule, value)]) {
            assert_eq!(tr.key, key());
            assert_eq!(tr.at, at(t));
            got.push(format!(
                "{t}: {} → {}, {} ({})",
                tr.from, tr.to, tr.value, tr.threshold
            ));
        }
    }
    assert_eq!(got, expected);
    alerts
}

fn every_10s(values: &[f64]) -> Vec<(u64, Option<f64>)> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as u64 * 10, Some(v)))
        .collect()
}

#[test]
fn pending_then_firing_once_for_has_elapsed() {
    let rule = rule(Direction::Above, Some(100.0), Some(200.0), 60, 0);
    let alerts = check(
        &rule,
        &every_10s(&[50.0, 150.0, 150.0, 150.0, 150.0, 150.0, 150.0, 150.0]),
        &[
            "10: inactive → pending, 150 (100)",
            "70: pending → firing (warning), 150 (100)",
        ],
    );
    let firing = alerts.firing();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].severity, Severity::Warning);
    assert_eq!(firing[0].since, at(70));
    assert!(alerts.pending().is_empty());
}

#[test]
fn zero_for_fires_at_once() {
    let rule = rule(Direction::Above, Some(100.0), None, 0, 0);
    check(
        &rule,
        &every_10s(&[150.0]),
        &["0: inactive → firing (warning), 150 (100)"],
    );
}

#[test]
fn no_fire_when_the_value_dips_before_for() {
    let rule = rule(Direction::Above, Some(100.0), None, 60, 0);
    let alerts = check(
        &rule,
        &every_10s(&[150.0, 150.0, 150.0, 150.0, 150.0, 90.0, 150.0, 150.0, 150.0]),
        &[
            "0: inactive → pending, 150 (100)",
            "50: pending → inactive, 90 (100)",
            "60: inactive → pending, 150 (100)",
        ],
    );
    // Pending again since the dip, not since the first breach.
    let pending = alerts.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].since, at(60));
}

#[test]
fn a_breach_of_critical_for_the_whole_for_fires_critical() {
    let rule = rule(Direction::Above, Some(100.0), Some(200.0), 60, 0);
    check(
        &rule,
        &every_10s(&[250.0, 250.0, 250.0, 250.0, 250.0, 250.0, 250.0]),
        &[
            "0: inactive → pending, 250 (200)",
            "60: pending → firing (critical), 250 (200)",
        ],
    );
}

#[test]
fn severity_moves_between_warning_and_critical_without_resolving() {
    let rule = rule(Direction::Above, Some(100.0), Some(200.0), 20, 30);
    let alerts = check(
        &rule,
        &every_10s(&[
            150.0, 150.0, 150.0, 250.0, 250.0, 250.0, 150.0, 150.0, 150.0, 150.0, 150.0,
        ]),
        &[
            "0: inactive → pending, 150 (100)",
            "20: pending → firing (warning), 150 (100)",
            // critical breached from 30 on, held for 20 s
            "50: firing (warning) → firing (critical), 250 (200)",
            // under critical from 60 on, for 30 s
            "90: firing (critical) → firing (warning), 150 (100)",
        ],
    );
    let firing = alerts.firing();
    assert_eq!(firing[0].since, at(20), "a severity change keeps the start");
    assert_eq!(firing[0].last_notified, Some(at(90)));
}

#[test]
fn resolves_only_after_clear_after() {
    let rule = rule(Direction::Above, Some(100.0), None, 0, 60);
    let alerts = check(
        &rule,
        &[
            (0, Some(150.0)),
            (10, Some(50.0)),
            (60, Some(50.0)),
            (69, Some(50.0)),
            (70, Some(50.0)),
        ],
        &[
            "0: inactive → firing (warning), 150 (100)",
            "70: firing (warning) → inactive, 50 (100)",
        ],
    );
    assert!(alerts.all().is_empty(), "an inactive alert holds no memory");
}

#[test]
fn a_breach_during_clear_after_starts_it_again() {
    let rule = rule(Direction::Above, Some(100.0), None, 0, 60);
    check(
        &rule,
        &[
            (0, Some(150.0)),
            (10, Some(50.0)),
            (50, Some(150.0)),
            (60, Some(50.0)),
            (110, Some(50.0)),
            (120, Some(50.0)),
        ],
        &[
            "0: inactive → firing (warning), 150 (100)",
            "120: firing (warning) → inactive, 50 (100)",
        ],
    );
}

#[test]
fn a_noisy_series_around_the_threshold_does_not_flap() {
    let rule = rule(Direction::Above, Some(100.0), Some(200.0), 0, 60);
    let noisy: Vec<f64> = (0..120)
        .map(|i| if i % 2 == 0 { 105.0 } else { 95.0 })
        .collect();
    let alerts = check(
        &rule,
        &every_10s(&noisy),
        &["0: inactive → firing (warning), 105 (100)"],
    );
    assert_eq!(alerts.firing().len(), 1);

    // Around the critical threshold: warning ⇄ critical does not flap either.
    let noisy: Vec<f64> = (0..120)
        .map(|i| if i % 2 == 0 { 205.0 } else { 195.0 })
        .collect();
    check(
        &rule,
        &every_10s(&noisy),
        &["0: inactive → firing (critical), 205 (200)"],
    );
}

#[test]
fn below_direction_for_free_disk() {
    let rule = Rule {
        name: "disk_free".into(),
        ..rule(Direction::Below, Some(0.2), Some(0.1), 0, 0)
    };
    check(
        &rule,
        &every_10s(&[0.5, 0.15, 0.05, 0.5]),
        &[
            "10: inactive → firing (warning), 0.15 (0.2)",
            "20: firing (warning) → firing (critical), 0.05 (0.1)",
            "30: firing (critical) → inactive, 0.5 (0.2)",
        ],
    );
}

#[test]
fn no_data_keeps_the_state() {
    let rule = rule(Direction::Above, Some(100.0), None, 60, 30);
    // Firing, then the app stops reporting for ten minutes: still firing.
    let mut steps = every_10s(&[150.0; 7]);
    steps.extend((7..67).map(|i| (i * 10, None)));
    steps.push((680, Some(f64::NAN)));
    let alerts = check(
        &rule,
        &steps,
        &[
            "0: inactive → pending, 150 (100)",
            "60: pending → firing (warning), 150 (100)",
        ],
    );
    assert_eq!(alerts.firing()[0].value, 150.0);

    // Pending, then no data: still pending, and the breach counts from its start.
    check(
        &rule,
        &[(0, Some(150.0)), (10, None), (50, None), (60, Some(150.0))],
        &[
            "0: inactive → pending, 150 (100)",
            "60: pending → firing (warning), 150 (100)",
        ],
    );
}

#[test]
fn a_rule_without_thresholds_never_fires() {
    let rule = rule(Direction::Above, None, None, 0, 0);
    check(&rule, &every_10s(&[1e9, -1e9]), &[]);
}

#[test]
fn reminders_are_due_every_interval() {
    let rule = rule(Direction::Above, Some(100.0), None, 0, 0);
    let mut alerts = Alerts::new();
    let pending_rule = Rule {
        for_: Duration::from_secs(600),
        ..rule.clone()
    };
    let other = AlertKey::new("p95_latency", "shop", "web /admin");
    alerts.evaluate(
        at(0),
        [
            (key(), &rule, Some(150.0)),
            (other, &pending_rule, Some(150.0)),
        ],
    );
    let hour = Duration::from_secs(3600);
    assert!(alerts.due_reminders(at(3599), hour).is_empty());
    let due = alerts.due_reminders(at(3600), hour);
    assert_eq!(due.len(), 1, "pending alerts are not reminded of");
    assert_eq!(due[0].key, key());
    assert_eq!(due[0].last_notified, Some(at(3600)));
    assert!(alerts.due_reminders(at(3601), hour).is_empty());
    assert_eq!(alerts.due_reminders(at(7200), hour).len(), 1);
    assert!(alerts.due_reminders(at(99_999), Duration::ZERO).is_empty());
}

#[test]
fn retain_resolves_what_it_forgets() {
    let rule = rule(Direction::Above, Some(100.0), None, 0, 0);
    let mut alerts = Alerts::new();
    let kept = AlertKey::new("p95_latency", "blog", "");
    alerts.evaluate(
        at(0),
        [
            (key(), &rule, Some(150.0)),
            (kept.clone(), &rule, Some(120.0)),
        ],
    );
    let gone = alerts.retain(at(10), |key| key.app != "shop");
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].key, key());
    assert_eq!(gone[0].change(), Change::Resolved);
    assert_eq!(
        alerts.all().iter().map(|a| &a.key).collect::<Vec<_>>(),
        [&kept]
    );
}

#[test]
fn transitions_name_their_change() {
    let t = |from, to| {
        Transition {
            key: key(),
            from,
            to,
            value: 0.0,
            threshold: 0.0,
            at: at(0),
        }
        .change()
    };
    use State::*;
    assert_eq!(t(Inactive, Pending), Change::Pending);
    assert_eq!(t(Pending, Inactive), Change::PendingCancelled);
    assert_eq!(t(Pending, Firing(Severity::Warning)), Change::Fired);
    assert_eq!(t(Inactive, Firing(Severity::Critical)), Change::Fired);
    assert_eq!(
        t(Firing(Severity::Warning), Firing(Severity::Critical)),
        Change::SeverityChanged
    );
    assert_eq!(t(Firing(Severity::Critical), Inactive), Change::Resolved);
}

#[test]
fn a_clock_stepping_back_counts_as_no_time() {
    let rule = rule(Direction::Above, Some(100.0), None, 60, 0);
    check(
        &rule,
        &[
            (100, Some(150.0)),
            (0, Some(150.0)),
            (150, Some(150.0)),
            (160, Some(150.0)),
        ],
        &[
            "100: inactive → pending, 150 (100)",
            "160: pending → firing (warning), 150 (100)",
        ],
    );
}
