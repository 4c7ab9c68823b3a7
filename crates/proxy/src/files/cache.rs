//! The cache of static roots: what each request path of a root names (a file with its
//! representations, a redirect, or nothing), found on disk once.
//!
//! Release trees are immutable, so an answer never goes stale while its root is published: the
//! cache is keyed by the route's root directory, never revalidated, and dropped when no
//! published table has that root any more (a deploy publishes a new root; the old one's cache
//! goes with the last request that still uses the old table). A root published again later
//! starts from an empty cache.
//!
//! Bounded: at most [`MAX_ENTRIES`] paths per root (beyond it an arbitrary entry of the same
//! shard makes room, so a flood of made-up paths cannot grow it), and file contents only within
//! the proxy's memory budget (shared by every root).

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::asset::Budget;
use super::load::{self, Found};
use super::path::RequestPath;

/// Paths remembered per root.
pub(crate) const MAX_ENTRIES: usize = 16 * 1024;
const SHARDS: usize = 16;

/// Every root a published table holds, and the memory budget they share.
pub(crate) struct Sites {
    sites: Mutex<HashMap<PathBuf, Weak<Site>>>,
    budget: Arc<Budget>,
    /// Lookups that went to disk, across every root.
    misses: Arc<AtomicU64>,
}

impl Sites {
    /// `memory`: bytes of file contents kept in memory across every root.
    pub fn new(memory: u64) -> Sites {
        Sites {
            sites: Mutex::default(),
            budget: Budget::new(memory),
            misses: Arc::default(),
        }
    }

    /// The site of `root`: the one a table still holds, or a new one with an empty cache.
    pub fn site(&self, root: &Path) -> Arc<Site> {
        let mut sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        sites.retain(|_, site| site.strong_count() > 0);
        if let Some(site) = sites.get(root).and_then(Weak::upgrade) {
            return site;
        }
        let mut site = Site::new(root.to_owned(), self.budget.clone());
        site.misses = self.misses.clone();
        let site = Arc::new(site);
        sites.insert(root.to_owned(), Arc::downgrade(&site));
        site
    }
}

impl Collector for Sites {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let live: Vec<Arc<Site>> = {
            let sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
            sites.values().filter_map(Weak::upgrade).collect()
        };
        let paths: usize = live.iter().map(|s| s.len()).sum();
        // Counters are named without `_total`: the encoder adds it.
        let series: [(&str, &str, MetricType, u64); 4] = [
            (
                "berth_proxy_static_roots",
                "Static roots a published route table holds, each with its cache.",
                MetricType::Gauge,
                live.len() as u64,
            ),
            (
                "berth_proxy_static_paths",
                "Request paths whose answer the static caches hold.",
                MetricType::Gauge,
                paths as u64,
            ),
            (
                "berth_proxy_static_memory_bytes",
                "Bytes of static files and of encodings made from them held in memory.",
                MetricType::Gauge,
                self.budget.used(),
            ),
            (
                "berth_proxy_static_lookups_on_disk",
                "Static request paths looked up on disk (cache misses).",
                MetricType::Counter,
                self.misses.load(Relaxed),
            ),
        ];
        for (name, help, kind, value) in series {
            let metric = encoder.encode_descriptor(name, help, None, kind)?;
            match kind {
                MetricType::Counter => ConstCounter::new(value).encode(metric)?,
                _ => ConstGauge::new(value).encode(metric)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Sites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("proxy::files::Sites")
            .finish_non_exhaustive()
    }
}

/// Request paths (their keys) and what they name.
type Shard = RwLock<HashMap<Box<str>, Found>>;

/// One static root and what its paths name.
pub(crate) struct Site {
    root: PathBuf,
    /// `root` with every symlink resolved, once it could be.
    canonical: OnceLock<PathBuf>,
    shards: Box<[Shard]>,
    hasher: std::hash::RandomState,
    budget: Arc<Budget>,
    misses: Arc<AtomicU64>,
}

impl Site {
    pub fn new(root: PathBuf, budget: Arc<Budget>) -> Site {
        Site {
            root,
            canonical: OnceLock::new(),
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: std::hash::RandomState::new(),
            budget,
            misses: Arc::default(),
        }
    }

    /// What `path` names: from the cache, or found on disk on the blocking pool and cached.
    pub async fn find(self: &Arc<Self>, path: &RequestPath<'_>) -> Found {
        let shard = &self.shards[self.shard(path.key())];
        if let Some(found) = shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path.key())
        {
            return found.clone();
        }
        self.misses.fetch_add(1, Relaxed);
        let site = self.clone();
        let key: Box<str> = path.key().into();
        let found = tokio::task::spawn_blocking(move || {
            let found = site.find_on_disk(&key);
            if let Some(found) = &found {
                site.insert(key, found.clone());
            }
            found
        })
        .await;
        match found {
            Ok(found) => found.unwrap_or(Found::Missing),
            Err(err) => {
                tracing::warn!(error = %err, "static file lookup failed");
                Found::Missing
            }
        }
    }

    /// `None` when the root itself is unavailable: nothing is cached then.
    fn find_on_disk(&self, key: &str) -> Option<Found> {
        let root = match self.canonical.get() {
            Some(root) => root,
            None => match std::fs::canonicalize(&self.root) {
                Ok(root) => self.canonical.get_or_init(|| root),
                Err(err) => {
                    tracing::warn!(root = %self.root.display(), error = %err, "static root unavailable");
                    return None;
                }
            },
        };
        Some(load::find(root, &RequestPath::from_key(key), &self.budget))
    }

    fn insert(&self, key: Box<str>, found: Found) {
        let mut map = self.shards[self.shard(&key)]
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES / SHARDS && !map.contains_key(&key) {
            // The map's order follows the keyed hash, so this is as good as a random victim.
            if let Some(victim) = map.keys().next().cloned() {
                map.remove(&victim);
            }
        }
        map.insert(key, found);
    }

    fn shard(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % SHARDS
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_paths_cannot_grow_the_cache() {
        let site = Site::new(PathBuf::from("/nonexistent"), Budget::new(0));
        for i in 0..MAX_ENTRIES * 3 {
            site.insert(format!("made-up-{i}").into(), Found::Missing);
        }
        let len = site.len();
        assert!(len <= MAX_ENTRIES, "{len}");
        assert!(len >= MAX_ENTRIES * 9 / 10, "{len}: shards fill evenly");
        // The newest entry is always there.
        let newest = format!("made-up-{}", MAX_ENTRIES * 3 - 1);
        let shard = site.shards[site.shard(&newest)].read().unwrap();
        assert!(shard.contains_key(newest.as_str()));
    }
}
