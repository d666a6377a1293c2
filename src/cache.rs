//! The read-through cache in front of the store: moka, bounded by bytes (a
//! weigher) and by age (time to live).
//!
//! The cache never decides a write; it only answers CACHED reads. An entry is
//! either a session or a *floor*: "a version at least this new exists". A
//! write (here or, through the invalidation feed, on another instance) leaves
//! a floor behind, and a fill from the store is refused if it is older than
//! the entry already there. That closes the race where a slow read of version
//! N lands in the cache after the invalidation for N+1 arrived.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use moka::future::Cache as Moka;
use moka::notification::RemovalCause;
use moka::ops::compute::Op;

use crate::session::{Session, SessionKey};
use crate::stats::Stats;
use crate::store::now_ms;

#[derive(Clone)]
enum Entry {
    Present(Arc<Session>),
    Floor(u64),
}

impl Entry {
    /// Whether this entry already knows of version `floor` or a newer one.
    fn knows(&self, floor: u64) -> bool {
        match self {
            Entry::Present(s) => s.version >= floor,
            Entry::Floor(v) => *v >= floor,
        }
    }
}

/// Bytes an entry costs beyond its fields: key, bookkeeping, moka's node.
const ENTRY_OVERHEAD: u64 = 160;

#[derive(Clone)]
pub struct Cache {
    /// `None` when the cache is off (max age 0).
    moka: Option<Moka<SessionKey, Entry>>,
    stats: Arc<Stats>,
}

impl Cache {
    pub fn new(max_bytes: u64, max_age: Duration, stats: Arc<Stats>) -> Cache {
        if max_age.is_zero() || max_bytes == 0 {
            return Cache { moka: None, stats };
        }
        let evictions = stats.clone();
        let moka = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &SessionKey, e: &Entry| {
                let data = match e {
                    Entry::Present(s) => s.fields.bytes(),
                    Entry::Floor(_) => 0,
                };
                (data + (k.id.len() + k.namespace.len()) as u64 + ENTRY_OVERHEAD)
                    .min(u32::MAX as u64) as u32
            })
            .time_to_live(max_age)
            .eviction_listener(move |_k, _v, cause| {
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    evictions.cache_evictions.fetch_add(1, Relaxed);
                }
            })
            .build();
        Cache {
            moka: Some(moka),
            stats,
        }
    }

    /// A cached copy at least as new as `min_version` that has not idly
    /// expired; counts the hit or miss.
    pub async fn get(&self, key: &SessionKey, min_version: u64) -> Option<Arc<Session>> {
        let found = match &self.moka {
            Some(m) => match m.get(key).await {
                Some(Entry::Present(s)) if s.version >= min_version && s.expires_ms > now_ms() => {
                    Some(s)
                }
                _ => None,
            },
            None => None,
        };
        let counter = if found.is_some() {
            &self.stats.cache_hits
        } else {
            &self.stats.cache_misses
        };
        counter.fetch_add(1, Relaxed);
        found
    }

    /// Stores a session just read from the store, unless the cache already
    /// knows of something newer.
    pub async fn fill(&self, key: &SessionKey, session: Arc<Session>) {
        let Some(m) = &self.moka else { return };
        // The common case on a hot session: this version is cached already.
        // A lock-free look saves the per-key compute below.
        if let Some(Entry::Present(s)) = m.get(key).await
            && s.version >= session.version
        {
            return;
        }
        m.entry_by_ref(key)
            .and_compute_with(|existing| {
                // A version identifies its content, so an equal version
                // cached already needs no replacing; a floor of that version
                // does.
                let op = match existing.map(|e| e.into_value()) {
                    Some(Entry::Present(s)) if s.version >= session.version => Op::Nop,
                    Some(Entry::Floor(v)) if v > session.version => Op::Nop,
                    _ => Op::Put(Entry::Present(session)),
                };
                std::future::ready(op)
            })
            .await;
    }

    /// Records that the session now has a version of at least `floor` (or,
    /// after a delete, that any re-created one will): older copies are gone.
    pub async fn invalidate(&self, key: &SessionKey, floor: u64) {
        let Some(m) = &self.moka else { return };
        // The common case on the invalidation feed: this instance wrote the
        // version and left its floor already. A lock-free look saves the
        // per-key compute below.
        if m.get(key).await.is_some_and(|e| e.knows(floor)) {
            return;
        }
        m.entry_by_ref(key)
            .and_compute_with(|existing| {
                let op = match existing {
                    Some(e) if e.value().knows(floor) => Op::Nop,
                    _ => Op::Put(Entry::Floor(floor)),
                };
                std::future::ready(op)
            })
            .await;
    }

    /// Drops everything (the invalidation feed was lost).
    pub fn clear(&self) {
        if let Some(m) = &self.moka {
            m.invalidate_all();
        }
    }

    pub fn enabled(&self) -> bool {
        self.moka.is_some()
    }

    /// (entries, weighted bytes), approximate.
    pub fn size(&self) -> (u64, u64) {
        self.moka
            .as_ref()
            .map_or((0, 0), |m| (m.entry_count(), m.weighted_size()))
    }
}
