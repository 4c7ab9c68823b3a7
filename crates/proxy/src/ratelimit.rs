//! Rate-limit zones (a token bucket per client address) and the per-address connection limit.
//!
//! A zone's bucket is kept as GCRA's "theoretical arrival time" (one `u64` per key): a request
//! is allowed when adding one emission interval keeps that time within `burst` intervals of
//! now, which is exactly a token bucket of `burst` tokens refilled at the zone's rate. A key
//! whose time is in the past has a full bucket, which is the same as having no entry, so such
//! keys are dropped whenever a shard is swept.
//!
//! Memory is bounded: each of the 16 shards holds at most `max_keys / 16` keys. A new key in a
//! full shard first sweeps out the full buckets; if that is not enough, the eighth of the keys
//! closest to full is evicted (they lose the least: at worst a client gets a fresh burst).
//! IPv6 clients are keyed by their /64, the block one subscriber usually gets.
//!
//! Zones live in the [`Proxy`](crate::Proxy), keyed by app and zone name, so their state
//! survives the route-table swaps of every deploy; a zone whose rate or burst changes starts
//! afresh.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

const SHARDS: usize = 16;

/// A route's rate limit: the zone it counts against and the zone's rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// The zone's name; routes of one app naming the same zone share its buckets.
    pub zone: String,
    /// `requests` per `per` on average…
    pub requests: u32,
    pub per: Duration,
    /// …with up to `burst` at once.
    pub burst: u32,
}

/// The key of a client: its IPv4 address or its IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    V4(u32),
    V6(u64),
}

impl Key {
    pub fn of(ip: IpAddr) -> Key {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Key::V4(v4.to_bits()),
            IpAddr::V6(v6) => Key::V6((v6.to_bits() >> 64) as u64),
        }
    }
}

/// A map split into shards by key, each behind its own lock.
struct Sharded<V> {
    hasher: RandomState,
    shards: [Mutex<HashMap<Key, V>>; SHARDS],
}

impl<V> Sharded<V> {
    fn new() -> Self {
        Sharded {
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// The shard of `key` (index and locked map).
    fn shard(&self, key: Key) -> (usize, std::sync::MutexGuard<'_, HashMap<Key, V>>) {
        // The top bits: HashMap uses the low ones of the same kind of hash.
        let i = (self.hasher.hash_one(key) >> 60) as usize % SHARDS;
        (
            i,
            self.shards[i]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// One zone of one app: its buckets, keyed by client.
pub(crate) struct Zone {
    pub label: String,
    limit: RateLimit,
    /// Nanoseconds per request (the emission interval).
    interval: u64,
    /// `burst` intervals: how far ahead of now a bucket's time may run.
    tolerance: u64,
    epoch: Instant,
    max_per_shard: usize,
    buckets: Sharded<Bucket>,
    /// Per shard: when to next drop its full buckets (nanoseconds after `epoch`).
    next_sweep: [AtomicU64; SHARDS],
    pub limited: AtomicU64,
    pub evicted: AtomicU64,
}

struct Bucket {
    /// When the bucket is full again, in nanoseconds after `epoch`.
    tat: u64,
}

impl Zone {
    fn new(label: String, limit: RateLimit, max_keys: usize) -> Zone {
        let per = u64::try_from(limit.per.as_nanos()).unwrap_or(u64::MAX);
        let interval = (per / u64::from(limit.requests.max(1))).max(1);
        let tolerance = interval.saturating_mul(u64::from(limit.burst.max(1)));
        Zone {
            label,
            limit,
            interval,
            tolerance,
            epoch: Instant::now(),
            max_per_shard: (max_keys / SHARDS).max(1),
            buckets: Sharded::new(),
            next_sweep: Default::default(),
            limited: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    /// Takes a token for `ip`, or says how long until one is free.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(Key::of(ip), now)
    }

    fn check_at(&self, key: Key, now: u64) -> Result<(), Duration> {
        let (i, mut shard) = self.buckets.shard(key);
        if let Some(b) = shard.get_mut(&key) {
            let tat = b.tat.max(now).saturating_add(self.interval);
            if tat - now > self.tolerance {
                drop(shard);
                self.limited.fetch_add(1, Relaxed);
                return Err(Duration::from_nanos(tat - now - self.tolerance));
            }
            b.tat = tat;
            return Ok(());
        }
        if shard.len() >= self.max_per_shard {
            self.make_room(&mut shard, now);
        } else if now >= self.next_sweep[i].load(Relaxed) {
            // Every bucket present now is full again after `tolerance`, unless it was used.
            shard.retain(|_, b| b.tat > now);
            self.next_sweep[i].store(now.saturating_add(self.tolerance), Relaxed);
        }
        // A full bucket, less the token taken now (burst >= 1, so this one always passes).
        shard.insert(
            key,
            Bucket {
                tat: now.saturating_add(self.interval),
            },
        );
        Ok(())
    }

    /// Drops full buckets; if the shard is still full, the eighth of its keys closest to full.
    fn make_room(&self, shard: &mut HashMap<Key, Bucket>, now: u64) {
        shard.retain(|_, b| b.tat > now);
        if shard.len() < self.max_per_shard {
            return;
        }
        let mut tats: Vec<u64> = shard.values().map(|b| b.tat).collect();
        let n = (tats.len() / 8).max(1);
        let (_, cut, _) = tats.select_nth_unstable(n - 1);
        let cut = *cut;
        let before = shard.len();
        shard.retain(|_, b| b.tat > cut);
        self.evicted
            .fetch_add((before - shard.len()) as u64, Relaxed);
    }

    pub fn keys(&self) -> usize {
        self.buckets.len()
    }
}

/// All zones of a proxy, by (app, zone name); outlives route tables.
#[derive(Default)]
pub(crate) struct Zones {
    zones: Mutex<BTreeMap<(String, String), Arc<Zone>>>,
}

impl Zones {
    /// The zone for `app`'s `limit`: the existing one if its rate and burst are unchanged.
    pub fn zone(&self, app: &str, limit: &RateLimit, max_keys: usize) -> Arc<Zone> {
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (app.to_owned(), limit.zone.clone());
        match zones.get(&key) {
            Some(z) if z.limit == *limit && z.max_per_shard == (max_keys / SHARDS).max(1) => {
                z.clone()
            }
            _ => {
                let z = Arc::new(Zone::new(
                    format!("{app}/{}", limit.zone),
                    limit.clone(),
                    max_keys,
                ));
                zones.insert(key, z.clone());
                z
            }
        }
    }

    /// Forgets the zones not `in_use` by the new route table (requests still on an older
    /// table keep theirs until they finish).
    pub fn retain<'a>(&self, in_use: impl Iterator<Item = &'a Arc<Zone>> + Clone) {
        let mut zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        zones.retain(|_, zone| in_use.clone().any(|z| Arc::ptr_eq(z, zone)));
    }

    pub fn get(&self, app: &str, zone: &str) -> Option<Arc<Zone>> {
        let zones = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
        zones.get(&(app.to_owned(), zone.to_owned())).cloned()
    }
}

/// The zones' series, read at scrape time.
impl Collector for Zones {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let zones: Vec<Arc<Zone>> = {
            let z = self.zones.lock().unwrap_or_else(PoisonError::into_inner);
            z.values().cloned().collect()
        };
        // Counters are named without `_total`: the encoder adds it.
        type Series = (&'static str, MetricType, &'static str, fn(&Zone) -> u64);
        let series: [Series; 3] = [
            (
                "berth_proxy_rate_limited",
                MetricType::Counter,
                "Requests answered 429 by a rate-limit zone.",
                |z| z.limited.load(Relaxed),
            ),
            (
                "berth_proxy_rate_limit_keys",
                MetricType::Gauge,
                "Client keys a rate-limit zone holds now.",
                |z| z.keys() as u64,
            ),
            (
                "berth_proxy_rate_limit_evicted_keys",
                MetricType::Counter,
                "Keys evicted from a full rate-limit zone before their bucket was full.",
                |z| z.evicted.load(Relaxed),
            ),
        ];
        for (name, kind, help, value) in series {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for z in &zones {
                let labels = [("zone", z.label.as_str())];
                let metric = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(value(z)).encode(metric)?,
                    _ => ConstGauge::new(value(z)).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Zones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("proxy::ratelimit::Zones")
            .finish_non_exhaustive()
    }
}

/// Open client connections per address (IPv6: per /64), for `max_connections_per_ip`.
pub(crate) struct ConnLimit {
    max: u32,
    open: Sharded<u32>,
}

impl ConnLimit {
    /// `max` 0: no limit.
    pub fn new(max: u32) -> ConnLimit {
        ConnLimit {
            max,
            open: Sharded::new(),
        }
    }

    /// Counts a connection from `ip` for as long as the guard lives; `None` when `ip` already
    /// has `max` open.
    pub fn acquire(&self, ip: IpAddr) -> Option<ConnGuard<'_>> {
        if self.max == 0 {
            return Some(ConnGuard {
                limit: self,
                key: None,
            });
        }
        let key = Key::of(ip);
        let (_, mut shard) = self.open.shard(key);
        let n = shard.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnGuard {
            limit: self,
            key: Some(key),
        })
    }
}

pub(crate) struct ConnGuard<'a> {
    limit: &'a ConnLimit,
    key: Option<Key>,
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let (_, mut shard) = self.limit.open.shard(key);
        if let Some(n) = shard.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                shard.remove(&key);
            }
        }
    }
}

/// Seconds for `Retry-After`: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn zone(requests: u32, per: Duration, burst: u32, max_keys: usize) -> Zone {
        let limit = RateLimit {
            zone: "z".into(),
            requests,
            per,
            burst,
        };
        Zone::new("a/z".into(), limit, max_keys)
    }

    #[test]
    fn bucket() {
        // 2/s burst 3: three at once, then one every 500 ms
        let z = zone(2, Duration::from_secs(1), 3, 1000);
        let k = Key::V4(1);
        for _ in 0..3 {
            assert_eq!(z.check_at(k, 10 * SEC), Ok(()));
        }
        assert_eq!(z.check_at(k, 10 * SEC), Err(Duration::from_millis(500)));
        assert!(z.check_at(k, 10 * SEC + SEC / 4).is_err());
        assert_eq!(z.check_at(k, 10 * SEC + SEC / 2), Ok(()));
        assert!(z.check_at(k, 10 * SEC + SEC / 2).is_err());
        // another key has its own bucket
        assert_eq!(z.check_at(Key::V4(2), 10 * SEC), Ok(()));
        // a long pause refills to `burst`, not beyond
        for _ in 0..3 {
            assert_eq!(z.check_at(k, 100 * SEC), Ok(()));
        }
        assert!(z.check_at(k, 100 * SEC).is_err());
    }

    #[test]
    fn bounded() {
        let z = zone(1, Duration::from_secs(60), 5, 160);
        for i in 0..10_000u32 {
            assert_eq!(z.check_at(Key::V4(i), SEC + u64::from(i)), Ok(()));
            assert!(z.keys() <= 160);
        }
        assert!(z.evicted.load(Relaxed) > 0);
        // full buckets are swept before anyone is evicted
        let z = zone(1000, Duration::from_secs(1), 1, 16);
        for i in 0..1000u32 {
            assert_eq!(z.check_at(Key::V4(i), u64::from(i) * SEC), Ok(()));
        }
        assert_eq!(z.evicted.load(Relaxed), 0);
    }

    #[test]
    fn keys() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Key::of(a), Key::of(b));
        assert_ne!(Key::of(a), Key::of(c));
        assert_eq!(
            Key::of("::ffff:1.2.3.4".parse().unwrap()),
            Key::of("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn retry_after() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn conn_limit() {
        let l = ConnLimit::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = l.acquire(ip).unwrap();
        let _b = l.acquire(ip).unwrap();
        assert!(l.acquire(ip).is_none());
        assert!(l.acquire("10.0.0.2".parse().unwrap()).is_some());
        drop(a);
        assert!(l.acquire(ip).is_some());
        assert!(ConnLimit::new(0).acquire(ip).is_some());
    }
}
