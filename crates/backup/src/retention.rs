//! Grandfather-father-son retention by calendar: the newest `last` backups, and the newest
//! backup of each of the last `daily` days, `weekly` ISO weeks and `monthly` months that have
//! one (in the server's local time). Days without a backup do not count, so a run of failures
//! never ages the good backups out. The newest backup whose drill passed is kept as well.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Local};

/// How many of each to keep (`keep = { last, daily, weekly, monthly }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// A successful backup, as retention sees it.
#[derive(Debug, Clone)]
pub struct Kept<'a> {
    pub id: &'a str,
    /// Unix milliseconds it started: what "newest" means (backups a second apart are told
    /// apart).
    pub at_ms: i64,
    /// Its last drill passed.
    pub verified: bool,
}

/// The ids of `backups` (successful ones, any order) that `keep` does not keep.
pub fn to_delete(backups: &[Kept<'_>], keep: Keep) -> Vec<String> {
    let mut newest_first: Vec<&Kept> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then(b.id.cmp(a.id)));

    let mut kept: BTreeSet<&str> = BTreeSet::new();
    // Whatever the policy says, the newest backup stays.
    let last = keep.last.max(1) as usize;
    kept.extend(newest_first.iter().take(last).map(|b| b.id));
    if let Some(b) = newest_first.iter().find(|b| b.verified) {
        kept.insert(b.id);
    }
    let local = |b: &Kept| -> DateTime<Local> {
        DateTime::from_timestamp_millis(b.at_ms)
            .unwrap_or_default()
            .with_timezone(&Local)
    };
    let mut by = |n: u32, period: &dyn Fn(DateTime<Local>) -> (i32, u32)| {
        let mut seen = BTreeSet::new();
        for b in &newest_first {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(period(local(b))) {
                kept.insert(b.id);
            }
        }
    };
    by(keep.daily, &|t| (t.year(), t.ordinal()));
    by(keep.weekly, &|t| {
        let w = t.iso_week();
        (w.year(), w.week())
    });
    by(keep.monthly, &|t| (t.year(), t.month()));

    newest_first
        .iter()
        .filter(|b| !kept.contains(b.id))
        .map(|b| b.id.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn ids(n: usize, start: i64, step: i64) -> Vec<(String, i64)> {
        (0..n)
            .map(|i| (format!("b{i:03}"), start + i as i64 * step))
            .collect()
    }

    fn run(list: &[(String, i64)], keep: Keep, verified: &[&str]) -> Vec<String> {
        let backups: Vec<Kept> = list
            .iter()
            .map(|(id, at)| Kept {
                id,
                at_ms: *at * 1000,
                verified: verified.contains(&id.as_str()),
            })
            .collect();
        let mut out = to_delete(&backups, keep);
        out.sort();
        out
    }

    const NOON: i64 = 1_800_000_000 - 1_800_000_000 % DAY + 12 * 3600;

    #[test]
    fn hourly_backups_for_sixty_days() {
        let list = ids(60 * 24, NOON - 60 * DAY, 3600);
        let keep = Keep {
            last: 3,
            daily: 7,
            weekly: 4,
            monthly: 12,
        };
        let deleted = run(&list, keep, &[]);
        let kept: Vec<&str> = list
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| !deleted.iter().any(|d| d == id))
            .collect();
        // 3 last (all today), 7 days (today's counted already), up to 4 weeks, 3 months.
        assert!(kept.len() >= 10 && kept.len() <= 3 + 7 + 4 + 3, "{kept:?}");
        assert!(kept.contains(&list.last().unwrap().0.as_str()));
        // Every kept one is the newest of its day but the `last` ones.
        assert_eq!(deleted.len(), list.len() - kept.len());
    }

    #[test]
    fn days_without_backups_do_not_age_the_good_ones_out() {
        // Seven daily backups, a month ago; nothing since (backups have been failing).
        let list = ids(7, NOON - 40 * DAY, DAY);
        let keep = Keep {
            last: 1,
            daily: 7,
            weekly: 0,
            monthly: 0,
        };
        assert!(run(&list, keep, &[]).is_empty());
    }

    #[test]
    fn keeps_the_newest_even_with_a_policy_of_nothing_and_the_newest_verified() {
        let list = ids(5, NOON, 60);
        let keep = Keep {
            last: 0,
            daily: 0,
            weekly: 0,
            monthly: 0,
        };
        let deleted = run(&list, keep, &["b001"]);
        assert_eq!(deleted, ["b000", "b002", "b003"]);
    }
}
