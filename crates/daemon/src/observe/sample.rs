//! From counters to figures: the proxy's and the supervisor's counters are cumulative; the
//! history and the alert rules want rates, shares and percentiles over a recent window. A
//! `Window` keeps the last few deltas of one route's counters.

use std::collections::VecDeque;

/// One route's counters between two samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Delta {
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    /// Per bucket (upper bound in seconds, answers), not cumulative.
    pub buckets: Vec<(f64, u64)>,
}

impl Delta {
    /// `now - before` of a route's sample, over `seconds`.
    pub fn between(before: &proxy::RouteSample, now: &proxy::RouteSample, seconds: f64) -> Delta {
        let total = |s: &proxy::RouteSample| s.by_class.iter().sum::<u64>();
        Delta {
            seconds,
            requests: total(now).saturating_sub(total(before)),
            errors: now.by_class[4].saturating_sub(before.by_class[4]),
            buckets: now
                .buckets
                .iter()
                .zip(&before.buckets)
                .map(|((b, n), (_, m))| (*b, n.saturating_sub(*m)))
                .collect(),
        }
    }

    /// The sum of several deltas (a longer window, or several routes of one app).
    pub fn sum<'a>(deltas: impl IntoIterator<Item = &'a Delta>) -> Delta {
        let mut out = Delta::default();
        for d in deltas {
            out.seconds = out.seconds.max(d.seconds);
            out.requests += d.requests;
            out.errors += d.errors;
            if out.buckets.is_empty() {
                out.buckets = d.buckets.clone();
            } else {
                for (o, (_, n)) in out.buckets.iter_mut().zip(&d.buckets) {
                    o.1 += n;
                }
            }
        }
        out
    }

    pub fn rate(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.requests as f64 / self.seconds)
    }

    /// The share of 5xx answers, when at least `min` requests were answered.
    pub fn error_rate(&self, min: u64) -> Option<f64> {
        (self.requests >= min.max(1)).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The `q` quantile (0..1) of the latency, in seconds, interpolated linearly inside the
    /// bucket it falls in (as Prometheus' `histogram_quantile` does). None without answers.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        let mut lower = 0.0;
        for (upper, n) in &self.buckets {
            if *n > 0 && (seen + n) as f64 >= rank {
                let into = (rank - seen as f64) / *n as f64;
                return Some(lower + (upper - lower) * into.clamp(0.0, 1.0));
            }
            seen += n;
            lower = *upper;
        }
        // Slower than the last bucket: the last bound is all that is known.
        Some(lower)
    }
}

/// The last `len` deltas of something, newest last.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    deltas: VecDeque<Delta>,
}

impl Window {
    pub fn push(&mut self, d: Delta, len: usize) {
        self.deltas.push_back(d);
        while self.deltas.len() > len {
            self.deltas.pop_front();
        }
    }

    /// Everything in the window as one delta.
    pub fn total(&self) -> Delta {
        let mut d = Delta::sum(&self.deltas);
        d.seconds = self.deltas.iter().map(|d| d.seconds).sum();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(buckets: &[(f64, u64)]) -> Delta {
        Delta {
            seconds: 10.0,
            requests: buckets.iter().map(|(_, n)| n).sum(),
            errors: 0,
            buckets: buckets.to_vec(),
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let d = delta(&[(0.01, 50), (0.1, 40), (1.0, 10)]);
        let p50 = d.quantile(0.5).unwrap();
        assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
        let p95 = d.quantile(0.95).unwrap();
        assert!((p95 - 0.55).abs() < 1e-9, "{p95}");
        assert_eq!(delta(&[(0.01, 0)]).quantile(0.5), None);
        assert_eq!(d.rate(), Some(10.0));
    }

    #[test]
    fn error_rate_needs_enough_answers() {
        let mut d = delta(&[(0.01, 5)]);
        d.errors = 1;
        assert_eq!(d.error_rate(10), None);
        assert_eq!(d.error_rate(5), Some(0.2));
    }
}
