//! The read-through cache in front of the store, bounded by bytes and by age.
//!
//! The cache never decides a write; it only answers CACHED reads. An entry is
//! either a session or a *floor*: "a version at least this new exists". A
//! write (here or, through the invalidation feed, on another instance) leaves
//! a floor behind, and a fill from the store is refused if it is older than
//! the entry already there. That closes the race where a slow read of version
//! N lands in the cache after the invalidation for N+1 arrived.
//!
//! Its own map, not moka: a million cached sessions of 256 B cost about 390
//! bytes each in moka (its key `Arc`, entry, entry info, deque nodes and
//! hash-table bucket) against 80 here (one node and an 8-byte slot), and a
//! hit takes one uncontended lock instead of moka's read log. The map is
//! split in [`SHARDS`] shards, each a `parking_lot::Mutex` over a hashbrown
//! table of boxed nodes keyed by SipHash with a per-process random key (ids
//! come from callers: no crafted collisions). Every step on a key (look,
//! fill, floor) runs under its shard's lock, so the floor rules need no
//! compare-and-retry. Eviction is approximately least recently used: when
//! the bytes held pass the bound, the shard being written drops its
//! expired entries and its least recently used eighth by bytes (and the
//! next shards in turn while the whole is still over): each shard is exact
//! LRU, the whole approximately.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use parking_lot::Mutex;

use crate::session::{Session, SessionKey};
use crate::stats::Stats;
use crate::store::now_ms;

/// Most shards of the map: enough that two cores rarely meet on one lock.
const SHARDS: usize = 64;

/// Least bytes a shard is meant to hold: a small cache gets fewer shards,
/// so that each still holds enough entries for recency to choose among.
const SHARD_MIN_BYTES: u64 = 256 * 1024;

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

/// One cached key: 64 bytes, boxed so that the table's slots stay 8 bytes.
struct Node {
    key: SessionKey,
    entry: Entry,
    /// What [`weigh`] charged for it.
    weight: u32,
    /// The shard's use counter when it was last read or written.
    used: u32,
    /// When it was filled or floored, in ms since the cache was made.
    born_ms: u64,
}

/// What a node costs beyond the names and values of its fields, as
/// measured with mimalloc (`scripts/bench-memory.sh`): the node (64), its
/// table slot (about 16 with the table's spare room), the id's allocation
/// rounded up (16); a session's `Arc` (64); per field the slot in `Fields`
/// (48), the name's allocation rounded up (8) and the shared header a value
/// gets once it is served (24).
const NODE_BYTES: u64 = 96;
const SESSION_BYTES: u64 = 64;
const FIELD_BYTES: u64 = 80;

/// The bytes an entry is charged: its key and fields and what holds them.
fn weigh(key: &SessionKey, entry: &Entry) -> u32 {
    let data = match entry {
        Entry::Present(s) => SESSION_BYTES + s.fields.bytes() + FIELD_BYTES * s.fields.len() as u64,
        Entry::Floor(_) => 0,
    };
    (NODE_BYTES + key.id.len() as u64 + data).min(u32::MAX as u64) as u32
}

#[derive(Default)]
struct Shard {
    table: HashTable<Box<Node>>,
    /// Advances on every use; a node's `used` is a reading of it.
    clock: u32,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Bytes charged for every node, all shards together.
    bytes: AtomicU64,
    max_bytes: u64,
    max_age_ms: u64,
    started: Instant,
    stats: Arc<Stats>,
}

#[derive(Clone)]
pub struct Cache {
    /// `None` when the cache is off (max age 0).
    inner: Option<Arc<Inner>>,
    stats: Arc<Stats>,
}

impl Cache {
    pub fn new(max_bytes: u64, max_age: Duration, stats: Arc<Stats>) -> Cache {
        if max_age.is_zero() || max_bytes == 0 {
            return Cache { inner: None, stats };
        }
        let inner = Inner {
            shards: (0..shards(max_bytes)).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            bytes: AtomicU64::new(0),
            max_bytes,
            max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
            started: Instant::now(),
            stats: stats.clone(),
        };
        Cache {
            inner: Some(Arc::new(inner)),
            stats,
        }
    }

    /// A cached copy at least as new as `min_version` that has not idly
    /// expired; counts the hit or miss.
    pub async fn get(&self, key: &SessionKey, min_version: u64) -> Option<Arc<Session>> {
        let found = self.inner.as_ref().and_then(|c| {
            c.with_node(key, |node| match node {
                Some(Node {
                    entry: Entry::Present(s),
                    ..
                }) if s.version >= min_version && s.expires_ms > now_ms() => Some(s.clone()),
                _ => None,
            })
        });
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
        let Some(c) = &self.inner else { return };
        c.put(key, |existing| match existing {
            // A version identifies its content, so an equal version cached
            // already needs no replacing; a floor of that version does.
            Some(Entry::Present(s)) if s.version >= session.version => None,
            Some(Entry::Floor(v)) if *v > session.version => None,
            _ => Some(Entry::Present(session)),
        });
    }

    /// Records that the session now has a version of at least `floor` (or,
    /// after a delete, that any re-created one will): older copies are gone.
    pub async fn invalidate(&self, key: &SessionKey, floor: u64) {
        let Some(c) = &self.inner else { return };
        c.put(key, |existing| match existing {
            Some(e) if e.knows(floor) => None,
            _ => Some(Entry::Floor(floor)),
        });
    }

    /// Drops everything (the invalidation feed was lost).
    pub fn clear(&self) {
        let Some(c) = &self.inner else { return };
        for shard in c.shards.iter() {
            let mut shard = shard.lock();
            let freed: u64 = shard.table.iter().map(|n| u64::from(n.weight)).sum();
            shard.table = HashTable::new();
            c.bytes.fetch_sub(freed, Relaxed);
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// (entries, weighted bytes).
    pub fn size(&self) -> (u64, u64) {
        self.inner.as_ref().map_or((0, 0), |c| {
            let entries = c.shards.iter().map(|s| s.lock().table.len() as u64).sum();
            (entries, c.bytes.load(Relaxed))
        })
    }
}

/// How many shards a cache of `max_bytes` gets: a power of two, 1 to
/// [`SHARDS`].
fn shards(max_bytes: u64) -> usize {
    let n = (max_bytes / SHARD_MIN_BYTES).clamp(1, SHARDS as u64);
    1 << n.ilog2()
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn shard_of(&self, hash: u64) -> Option<&Mutex<Shard>> {
        // The top bits: hashbrown uses the low ones and the top seven.
        self.shards.get((hash >> 48) as usize % self.shards.len())
    }

    fn expired(&self, node: &Node, now: u64) -> bool {
        now.saturating_sub(node.born_ms) >= self.max_age_ms
    }

    /// Runs `f` on the live node of `key` (an expired one is dropped first),
    /// marking it used.
    fn with_node<T>(&self, key: &SessionKey, f: impl FnOnce(Option<&Node>) -> T) -> T {
        let hash = self.hasher.hash_one(key);
        let Some(shard) = self.shard_of(hash) else {
            return f(None);
        };
        let mut shard = shard.lock();
        shard.clock = shard.clock.wrapping_add(1);
        let clock = shard.clock;
        match shard.table.find_entry(hash, |n| n.key == *key) {
            Ok(found) if self.expired(found.get(), self.now_ms()) => {
                let (node, _) = found.remove();
                self.bytes.fetch_sub(u64::from(node.weight), Relaxed);
                self.stats.cache_evictions.fetch_add(1, Relaxed);
                f(None)
            }
            Ok(mut found) => {
                let node = found.get_mut();
                node.used = clock;
                f(Some(node))
            }
            Err(_) => f(None),
        }
    }

    /// Replaces the entry of `key` with what `decide` returns, given the
    /// live one (`None`: leave it as it is); then evicts if over the bound.
    fn put(&self, key: &SessionKey, decide: impl FnOnce(Option<&Entry>) -> Option<Entry>) {
        let hash = self.hasher.hash_one(key);
        let Some(home) = self.shard_of(hash) else {
            return;
        };
        let now = self.now_ms();
        let mut shard = home.lock();
        shard.clock = shard.clock.wrapping_add(1);
        let clock = shard.clock;
        let slot = shard
            .table
            .entry(hash, |n| n.key == *key, |n| self.hasher.hash_one(&n.key));
        match slot {
            hashbrown::hash_table::Entry::Occupied(mut found) => {
                let node = found.get_mut();
                let live = !self.expired(node, now);
                let Some(entry) = decide(live.then_some(&node.entry)) else {
                    return;
                };
                let weight = weigh(key, &entry);
                self.bytes.fetch_add(u64::from(weight), Relaxed);
                self.bytes.fetch_sub(u64::from(node.weight), Relaxed);
                node.entry = entry;
                node.weight = weight;
                node.used = clock;
                node.born_ms = now;
            }
            hashbrown::hash_table::Entry::Vacant(absent) => {
                let Some(entry) = decide(None) else { return };
                let weight = weigh(key, &entry);
                self.bytes.fetch_add(u64::from(weight), Relaxed);
                absent.insert(Box::new(Node {
                    key: key.clone(),
                    entry,
                    weight,
                    used: clock,
                    born_ms: now,
                }));
            }
        }
        if self.bytes.load(Relaxed) <= self.max_bytes {
            return;
        }
        // Over the bound: this shard first, then the others in turn, each
        // locked alone.
        let n = self.shards.len();
        let start = (hash >> 48) as usize % n;
        self.evict(&mut shard, now);
        drop(shard);
        for i in 1..n {
            if self.bytes.load(Relaxed) <= self.max_bytes {
                return;
            }
            if let Some(other) = self.shards.get((start + i) % n) {
                self.evict(&mut other.lock(), now);
            }
        }
    }

    /// Drops the shard's expired nodes and its least recently used ones:
    /// enough to free an eighth of what it holds or what the whole is over,
    /// whichever is more (all of them if that is more than it holds).
    fn evict(&self, shard: &mut Shard, now: u64) {
        let clock = shard.clock;
        let age = |n: &Node| clock.wrapping_sub(n.used);
        // Every live node's age and charge, oldest first: the cutoff is the
        // age at which the oldest ones add up to what is wanted.
        let mut live: Vec<(u32, u32)> = shard
            .table
            .iter()
            .filter(|n| !self.expired(n, now))
            .map(|n| (age(n), n.weight))
            .collect();
        live.sort_unstable_by_key(|&(a, _)| std::cmp::Reverse(a));
        let held: u64 = live.iter().map(|&(_, w)| u64::from(w)).sum();
        let over = self.bytes.load(Relaxed).saturating_sub(self.max_bytes);
        let wanted = over.max(held / 8);
        let mut counted = 0;
        let mut cutoff = 0;
        for &(a, w) in &live {
            cutoff = a;
            counted += u64::from(w);
            if counted >= wanted {
                break;
            }
        }
        let (mut freed, mut dropped) = (0, 0);
        shard.table.retain(|n| {
            let drop = self.expired(n, now) || age(n) >= cutoff;
            if drop {
                freed += u64::from(n.weight);
                dropped += 1;
            }
            !drop
        });
        self.bytes.fetch_sub(freed, Relaxed);
        self.stats.cache_evictions.fetch_add(dropped, Relaxed);
    }
}

#[cfg(test)]
mod tests;
