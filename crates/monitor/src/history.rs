//! A bounded in-memory history of numeric series: what the dashboard draws and what alert
//! rules look back over.
//!
//! Every series keeps two rings of `f32` whose timestamps are implicit (a slot's number is
//! its time divided by the step, its place in the ring that number modulo the ring's length),
//! so memory per series is fixed however many points are recorded:
//!
//! | ring     | step | slots | covers | samples     |
//! | -------- | ---- | ----- | ------ | ----------- |
//! | [`FINE`] | 10 s | 360   | 1 h    | 1 440 bytes |
//! | [`COARSE`] | 1 min | 1 440 | 24 h | 5 760 bytes |
//!
//! That is 7 200 bytes of samples per series, plus about 250 bytes of bookkeeping: the map's
//! entry (the key and two ring headers, 136 bytes, with the table's spare room), the two
//! rings' allocations, and the key's two shared strings unless the caller shares them
//! between an app's series: **about 7.5 KB per series**, 7.5 MB for a thousand.
//!
//! Rules of the rings:
//! - a slot holds one value; NaN is "no value" (nothing recorded, or a non-finite value);
//! - one value per 10-s slot: the last one recorded in a slot wins;
//! - a coarse slot holds the **mean** of the 10-s values recorded in its minute, recomputed
//!   from the fine ring at every record (so no running sums are kept). For gauges and rates
//!   (requests/s, CPU, bytes, days to expiry) that is the minute's average; for a quantile
//!   (p95 latency) the mean of six 10-s p95s is an approximation, good for drawing; rules read
//!   the 10-s values ([`History::window`]). Counters are turned into rates before they are
//!   recorded;
//! - time goes forward: a record newer than a ring's newest slot clears the slots in between;
//!   a record older than the fine ring (more than an hour behind the series' newest point)
//!   is dropped;
//! - values are kept as `f32`: about 7 significant digits, plenty for a chart or a threshold.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One ring's step and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolution {
    pub step: Duration,
    pub slots: usize,
}

impl Resolution {
    /// How far back the ring reaches.
    pub const fn span(self) -> Duration {
        Duration::from_secs(self.step.as_secs() * self.slots as u64)
    }
}

/// The last hour at 10 s.
pub const FINE: Resolution = Resolution {
    step: Duration::from_secs(10),
    slots: 360,
};

/// The last 24 hours at 1 min.
pub const COARSE: Resolution = Resolution {
    step: Duration::from_secs(60),
    slots: 1440,
};

/// A series that has had no value for this long is dropped by [`History::prune`].
pub const RETENTION: Duration = COARSE.span();

/// Names one series: a metric of the daemon's fixed list and what it is about. Cheap to hash
/// and to clone (a static name and two shared strings).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    /// `"requests_per_second"`, `"p95_latency_seconds"`, `"disk_free_ratio"`, …
    pub metric: &'static str,
    /// The app; empty for the host's own series.
    pub app: Arc<str>,
    /// What in the app: a route, `service.instance`, a certificate's name; empty for the
    /// app as a whole.
    pub subject: Arc<str>,
}

impl SeriesKey {
    pub fn new(
        metric: &'static str,
        app: impl Into<Arc<str>>,
        subject: impl Into<Arc<str>>,
    ) -> Self {
        SeriesKey {
            metric,
            app: app.into(),
            subject: subject.into(),
        }
    }
}

/// What [`History::range`] returns: `values[i]` is the slot starting at `start + i × step`.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub start: SystemTime,
    pub step: Duration,
    pub values: Vec<Option<f64>>,
}

/// The series, by key. Not synchronised: the daemon owns one behind its lock.
#[derive(Debug, Default)]
pub struct History {
    series: HashMap<SeriesKey, Series>,
}

#[derive(Debug)]
struct Series {
    fine: Ring,
    coarse: Ring,
    /// Unix seconds of the newest finite value recorded, for [`History::prune`].
    last_value: u64,
}

/// Fine slots per coarse slot.
const PER_MINUTE: u64 = COARSE.step.as_secs() / FINE.step.as_secs();

impl History {
    pub fn new() -> History {
        History::default()
    }

    /// Records `value` for `key` at `at` in both rings. A non-finite value records "no
    /// value" (and does not create a series).
    pub fn record(&mut self, key: &SeriesKey, at: SystemTime, value: f64) {
        let t = unix(at);
        let value = value as f32;
        let value = if value.is_finite() { value } else { f32::NAN };
        let series = match self.series.get_mut(key) {
            Some(series) => series,
            None if value.is_nan() => return,
            None => self.series.entry(key.clone()).or_insert_with(Series::new),
        };
        if !series.fine.set(t / FINE.step.as_secs(), value) {
            return;
        }
        if !value.is_nan() {
            series.last_value = series.last_value.max(t);
        }
        let minute = t / COARSE.step.as_secs();
        let (sum, n) = (minute * PER_MINUTE..(minute + 1) * PER_MINUTE)
            .filter_map(|slot| series.fine.get(slot))
            .fold((0.0f64, 0u32), |(sum, n), v| (sum + f64::from(v), n + 1));
        let mean = if n == 0 {
            f32::NAN
        } else {
            (sum / f64::from(n)) as f32
        };
        series.coarse.set(minute, mean);
    }

    /// The values of `key` from `since` to `until` (both included, aligned down to a step):
    /// from the 10-s ring when the window is shorter than an hour and the ring still holds
    /// `since`, else from the 1-min ring; at most one ring's worth of slots, the newest ones.
    /// `None` when the series is unknown.
    pub fn range(&self, key: &SeriesKey, since: SystemTime, until: SystemTime) -> Option<Range> {
        let series = self.series.get(key)?;
        let (since, until) = (unix(since), unix(until));
        let short = until.saturating_sub(since) < FINE.span().as_secs();
        let ring = if short && series.fine.holds_or_newer(since / FINE.step.as_secs()) {
            &series.fine
        } else {
            &series.coarse
        };
        let step = ring.step;
        let last = until / step;
        let first = (since / step).max(last.saturating_sub(ring.len() - 1));
        let values = if since > until {
            Vec::new()
        } else {
            (first..=last)
                .map(|slot| ring.get(slot).map(f64::from))
                .collect()
        };
        Some(Range {
            start: UNIX_EPOCH + Duration::from_secs(first * step),
            step: Duration::from_secs(step),
            values,
        })
    }

    /// The 10-s values of `key` in the `duration` up to `now` (slots starting after
    /// `now - duration`, up to the one holding `now`), oldest first, skipping slots without a
    /// value. A series that stopped receiving values yields nothing: stale data does not
    /// keep a rule true. At most an hour's worth.
    pub fn window(
        &self,
        key: &SeriesKey,
        now: SystemTime,
        duration: Duration,
    ) -> impl Iterator<Item = f64> + '_ {
        let step = FINE.step.as_secs();
        let now = unix(now);
        let last = now / step;
        let first = (now.saturating_sub(duration.as_secs()) / step + 1)
            .max(last.saturating_sub(FINE.slots as u64 - 1));
        self.series
            .get(key)
            .into_iter()
            .flat_map(move |series| (first..=last).filter_map(|slot| series.fine.get(slot)))
            .map(f64::from)
    }

    /// The newest 10-s value of `key` and when its slot starts, if the last hour has one.
    pub fn latest(&self, key: &SeriesKey) -> Option<(SystemTime, f64)> {
        let fine = &self.series.get(key)?.fine;
        let newest = fine.newest?;
        (newest.saturating_sub(fine.len() - 1)..=newest)
            .rev()
            .find_map(|slot| fine.get(slot).map(|v| (slot, v)))
            .map(|(slot, v)| {
                let at = UNIX_EPOCH + Duration::from_secs(slot * fine.step);
                (at, f64::from(v))
            })
    }

    /// Drops the series that have had no value for [`RETENTION`] (24 h) before `now`;
    /// returns how many.
    pub fn prune(&mut self, now: SystemTime) -> usize {
        let cutoff = unix(now).saturating_sub(RETENTION.as_secs());
        let before = self.series.len();
        self.series.retain(|_, series| series.last_value > cutoff);
        before - self.series.len()
    }

    /// The keys of every series, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &SeriesKey> {
        self.series.keys()
    }

    /// How many series are held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl Series {
    fn new() -> Series {
        Series {
            fine: Ring::new(FINE),
            coarse: Ring::new(COARSE),
            last_value: 0,
        }
    }
}

/// A ring of slots: slot number `n` (time / step) lives at `n % len`.
#[derive(Debug)]
struct Ring {
    /// Seconds per slot.
    step: u64,
    values: Box<[f32]>,
    /// The newest slot number written; the ring holds `newest - len + 1 ..= newest`.
    newest: Option<u64>,
}

impl Ring {
    fn new(resolution: Resolution) -> Ring {
        Ring {
            step: resolution.step.as_secs(),
            values: vec![f32::NAN; resolution.slots].into_boxed_slice(),
            newest: None,
        }
    }

    fn len(&self) -> u64 {
        self.values.len() as u64
    }

    fn index(&self, slot: u64) -> usize {
        (slot % self.len()) as usize
    }

    /// Whether `slot` is in the ring or after its newest slot (not written yet, so known to
    /// have no value).
    fn holds_or_newer(&self, slot: u64) -> bool {
        self.newest
            .is_none_or(|newest| slot.saturating_add(self.len()) > newest)
    }

    fn get(&self, slot: u64) -> Option<f32> {
        let newest = self.newest?;
        if slot > newest || slot.saturating_add(self.len()) <= newest {
            return None;
        }
        Some(self.values[self.index(slot)]).filter(|v| !v.is_nan())
    }

    /// Writes `value` into `slot`, moving the ring forward when `slot` is newer than its
    /// newest (the slots skipped get no value). Returns false, writing nothing, when `slot`
    /// is older than the ring.
    fn set(&mut self, slot: u64, value: f32) -> bool {
        match self.newest {
            Some(newest) if slot.saturating_add(self.len()) <= newest => return false,
            Some(newest) if slot > newest => {
                let from = (newest + 1).max(slot.saturating_sub(self.len() - 1));
                for skipped in from..slot {
                    let i = self.index(skipped);
                    self.values[i] = f32::NAN;
                }
                self.newest = Some(slot);
            }
            Some(_) => {}
            None => self.newest = Some(slot),
        }
        let i = self.index(slot);
        self.values[i] = value;
        true
    }
}

/// Seconds since the Unix epoch; a time before it counts as the epoch.
fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time well after the epoch, aligned to the hour, so slot arithmetic is easy to read.
    const T0: u64 = 1_700_000_000 / 3600 * 3600;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn key() -> SeriesKey {
        SeriesKey::new("requests_per_second", "shop", "web")
    }

    #[test]
    fn capacity_does_not_grow_with_recorded_points() {
        let mut history = History::new();
        history.record(&key(), at(0), 1.0);
        let series = &history.series[&key()];
        let (fine, coarse) = (series.fine.values.as_ptr(), series.coarse.values.as_ptr());
        // Ten days at one point every 5 s: 172 800 points.
        for i in 0..172_800u64 {
            history.record(&key(), at(i * 5), i as f64);
        }
        let series = &history.series[&key()];
        assert_eq!(history.len(), 1);
        assert_eq!(series.fine.values.len(), FINE.slots);
        assert_eq!(series.coarse.values.len(), COARSE.slots);
        // The same allocations: nothing was reallocated or grown.
        assert_eq!(series.fine.values.as_ptr(), fine);
        assert_eq!(series.coarse.values.as_ptr(), coarse);
        assert!(std::mem::size_of::<(SeriesKey, Series)>() <= 136);
        assert_eq!(
            std::mem::size_of_val(&*series.fine.values)
                + std::mem::size_of_val(&*series.coarse.values),
            7200
        );
    }

    #[test]
    fn records_into_both_rings_with_the_minute_mean() {
        let mut history = History::new();
        for (i, v) in [1.0, 2.0, 3.0, 6.0].into_iter().enumerate() {
            history.record(&key(), at(i as u64 * 10), v);
        }
        // The last hour comes from the 10-s ring.
        let range = history.range(&key(), at(0), at(50)).unwrap();
        assert_eq!(range.start, at(0));
        assert_eq!(range.step, FINE.step);
        assert_eq!(
            range.values,
            [Some(1.0), Some(2.0), Some(3.0), Some(6.0), None, None]
        );
        // Older than an hour: the 1-min ring, whose slot holds the mean of its minute.
        let now = at(3600 * 3);
        history.record(&key(), now, 10.0);
        let range = history.range(&key(), at(0), at(120)).unwrap();
        assert_eq!(range.step, COARSE.step);
        assert_eq!(range.values, [Some(3.0), None, None]);
        assert_eq!(history.latest(&key()), Some((now, 10.0)));
    }

    #[test]
    fn the_last_value_in_a_slot_wins_and_nan_clears_it() {
        let mut history = History::new();
        history.record(&key(), at(0), 1.0);
        history.record(&key(), at(9), 5.0);
        assert_eq!(history.latest(&key()), Some((at(0), 5.0)));
        history.record(&key(), at(20), f64::NAN);
        history.record(&key(), at(21), f64::INFINITY);
        // The newest slot has no value: latest is the one before.
        assert_eq!(history.latest(&key()), Some((at(0), 5.0)));
        let range = history.range(&key(), at(0), at(20)).unwrap();
        assert_eq!(range.values, [Some(5.0), None, None]);
        // A non-finite value does not create a series.
        history.record(&SeriesKey::new("other", "shop", ""), at(0), f64::NAN);
        assert_eq!(history.len(), 1);
    }

    #[test]
    fn moving_forward_clears_the_skipped_slots() {
        let mut history = History::new();
        for i in 0..360 {
            history.record(&key(), at(i * 10), 1.0);
        }
        // 30 minutes later: the slots in between held values an hour ago; now they have none.
        history.record(&key(), at(3600 + 1800), 2.0);
        let range = history.range(&key(), at(3600), at(3600 + 1800)).unwrap();
        assert_eq!(range.step, FINE.step);
        assert_eq!(range.values.len(), 181);
        assert!(range.values[..180].iter().all(Option::is_none));
        assert_eq!(range.values[180], Some(2.0));
        // A value older than the 10-s ring is dropped.
        history.record(&key(), at(0), 9.0);
        assert_eq!(
            history.range(&key(), at(0), at(0)).unwrap().values,
            [Some(1.0)]
        );
    }

    #[test]
    fn a_range_is_at_most_one_ring() {
        let mut history = History::new();
        history.record(&key(), at(0), 1.0);
        let range = history.range(&key(), at(0), at(30 * 86_400)).unwrap();
        assert_eq!(range.step, COARSE.step);
        assert_eq!(range.values.len(), COARSE.slots);
        assert!(
            history
                .range(&key(), at(10), at(0))
                .unwrap()
                .values
                .is_empty()
        );
        assert_eq!(
            history.range(&SeriesKey::new("x", "", ""), at(0), at(10)),
            None
        );
    }

    #[test]
    fn window_is_the_recent_fine_values() {
        let mut history = History::new();
        for i in 0..20 {
            history.record(&key(), at(i * 10), i as f64);
        }
        let last_minute: Vec<f64> = history
            .window(&key(), at(190), Duration::from_secs(60))
            .collect();
        assert_eq!(last_minute, [14.0, 15.0, 16.0, 17.0, 18.0, 19.0]);
        // Nothing recorded in the last minute: an empty window, not the stale values.
        let later = history.window(&key(), at(400), Duration::from_secs(60));
        assert_eq!(later.count(), 0);
        let unknown = SeriesKey::new("x", "", "");
        assert_eq!(
            history
                .window(&unknown, at(190), Duration::from_secs(60))
                .count(),
            0
        );
    }

    #[test]
    fn prune_drops_series_without_values_for_a_day() {
        let mut history = History::new();
        let quiet = SeriesKey::new("requests_per_second", "shop", "api");
        history.record(&quiet, at(0), 1.0);
        history.record(&key(), at(0), 1.0);
        // The app went away: only "no value" since.
        history.record(&quiet, at(3600), f64::NAN);
        history.record(&key(), at(86_000), 1.0);
        assert_eq!(history.prune(at(86_399)), 0);
        assert_eq!(history.prune(at(86_400)), 1);
        assert_eq!(history.keys().collect::<Vec<_>>(), [&key()]);
    }
}
