//! The session core: every operation on a session, over the store and the
//! cache, with the rules that keep the cache honest. It knows nothing of
//! gRPC; `service.rs` validates requests and translates to and from it.
//!
//! The cache rules, all here:
//! - Only CACHED reads are answered from the cache; writes, locks and STRONG
//!   reads go to the store.
//! - **Trust.** With a shared store (other instances write too), the cache is
//!   trusted only while the invalidation feed is up: when it goes down,
//!   CACHED reads go to the store (counted as bypasses) and the cache is
//!   dropped; when it comes back, the cache is dropped again (it may have
//!   missed invalidations) and trusted. With a feed per shard (Redis
//!   Cluster), trust is also per slot: a shard's subscription going down
//!   stops CACHED reads of its slots' sessions only (the cache is still
//!   dropped whole, and again when the shard's feed is back).
//! - **Epoch.** Every change of the feed's health bumps the epoch; a read
//!   that began in an older epoch does not fill the cache (it may predate a
//!   lost invalidation).
//! - **Floors.** A write leaves its version as a floor; a delete leaves the
//!   deleted version + 1, since any re-created session starts above it. A
//!   fill older than a floor is refused (see `cache.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::session::{
    Admitted, Guards, LockGrant, LockRequest, Mutation, RateLimit, RateScope, Session, SessionKey,
    Written,
};
use crate::stats::Stats;
use crate::store::{self, Coverage, FeedEvent, Store};
use crate::watch::{Events, Hub, WatchLimits};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The cache may answer (at least `min_version`, if given).
    Cached,
    /// The store answers.
    Strong,
}

/// A session read, and whether the cache answered it.
#[derive(Debug, Clone)]
pub struct Read {
    pub session: Arc<Session>,
    pub from_cache: bool,
}

/// A lock just granted, as the gRPC edge attaches it to its answer so that
/// it can be released if the answer is never sent.
#[derive(Debug, Clone)]
pub struct GrantedLock {
    pub key: SessionKey,
    pub token: String,
}

pub struct Sessions {
    /// Shared with the followers of watched sessions (see `watch.rs`).
    store: Arc<Store>,
    cache: Cache,
    stats: Arc<Stats>,
    /// False while the cache cannot be trusted (the invalidation feed of a
    /// shared store is down). SeqCst with `epoch`: a reader that sees the
    /// cache trusted also sees the epoch bumped with it.
    trusted: AtomicBool,
    /// Bumped whenever the feed (or a shard's) goes down or comes back.
    epoch: AtomicU64,
    /// This instance's watchers.
    watch: Arc<Hub>,
    /// With a feed per shard: whether each Redis Cluster slot's shard is
    /// subscribed (indexed by slot; all false until told otherwise).
    slots: Option<Box<[AtomicBool]>>,
}

/// Redis Cluster's slot count.
const SLOTS: usize = 16384;

impl Sessions {
    /// The cache is trusted at once when nobody else writes; with a shared
    /// store, only once the invalidation feed is up (and with a feed per
    /// shard, a slot's sessions once its shard's is).
    pub fn new(store: Store, cache: Cache, stats: Arc<Stats>, coverage: Coverage) -> Sessions {
        Sessions {
            store: Arc::new(store),
            cache,
            watch: Arc::new(Hub::new(WatchLimits::default(), stats.clone())),
            stats,
            trusted: AtomicBool::new(coverage == Coverage::Alone),
            epoch: AtomicU64::new(0),
            slots: (coverage == Coverage::Slots)
                .then(|| (0..SLOTS).map(|_| AtomicBool::new(false)).collect()),
        }
    }

    /// The same, with these caps on watchers.
    pub fn with_watch_limits(mut self, limits: WatchLimits) -> Sessions {
        self.watch = Arc::new(Hub::new(limits, self.stats.clone()));
        self
    }

    /// Watches `key`: a snapshot (or, with `after` > 0, a resume when it can
    /// be served), then its events (see `watch.rs`). Refused at once beyond
    /// the caps on watchers.
    pub fn watch(&self, key: &SessionKey, after: u64) -> Result<Events> {
        self.watch.watch(&self.store, key, after)
    }

    /// Watchers on this instance now.
    pub fn watchers(&self) -> usize {
        self.watch.watchers()
    }

    /// The server drains: watches end, and their followers with them.
    pub fn stop_watching(&self) {
        self.watch.close();
    }

    /// The session; `NotFound` when it does not exist (or idly expired).
    pub async fn get(
        &self,
        key: &SessionKey,
        consistency: Consistency,
        min_version: u64,
    ) -> Result<Read> {
        let epoch = self.epoch.load(SeqCst);
        if consistency == Consistency::Cached {
            if self.cache_trusted(key) {
                if let Some(session) = self.cache.get(key, min_version).await {
                    return Ok(Read {
                        session,
                        from_cache: true,
                    });
                }
            } else if self.cache.enabled() {
                self.stats.cache_bypasses.fetch_add(1, Relaxed);
            }
        }
        let session = self.store.get(key).await?.ok_or(Error::NotFound)?;
        // Versions never go back, unless the store lost data: a caller that
        // has seen a later version is told so, not handed the older session
        // as if it were current.
        if session.version < min_version {
            return Err(Error::VersionLost {
                seen: min_version,
                current: session.version,
            });
        }
        let session = Arc::new(session);
        self.fill(key, session.clone(), epoch).await;
        Ok(Read {
            session,
            from_cache: false,
        })
    }

    /// Takes the lock, waiting up to `wait` in the FIFO queue (zero: try
    /// once). The session that comes with the grant is not cached: the
    /// holder is about to write it, which would only replace the entry again.
    pub async fn lock(&self, key: &SessionKey, req: LockRequest) -> Result<LockGrant> {
        let result = self.store.lock(key, req).await;
        match &result {
            Ok(grant) if grant.replayed => {
                self.stats.lock_replayed.fetch_add(1, Relaxed);
            }
            Err(Error::Superseded) => {
                self.stats.lock_superseded.fetch_add(1, Relaxed);
            }
            _ => {}
        }
        result
    }

    pub async fn update(&self, key: &SessionKey, m: Mutation, g: Guards) -> Result<Written> {
        let written = match self.store.update(key, m, g).await {
            Ok(written) => written,
            Err(e) => {
                if let Error::QuotaExceeded { quota, .. } = &e {
                    self.stats.quota_refused(*quota);
                }
                return Err(e);
            }
        };
        self.cache.invalidate(key, written.version).await;
        Ok(written)
    }

    /// Whether there was a session to delete.
    pub async fn delete(&self, key: &SessionKey, g: Guards) -> Result<bool> {
        let deleted = self.store.delete(key, g).await?;
        if let Some(version) = deleted {
            // A re-created session starts above the deleted one's version.
            self.cache.invalidate(key, version.saturating_add(1)).await;
        }
        Ok(deleted.is_some())
    }

    pub async fn unlock(&self, key: &SessionKey, token: &str) -> Result<()> {
        self.store.unlock(key, token).await
    }

    /// One step of a rate limit; the cache has no part in it.
    pub async fn check_rate(&self, scope: &RateScope, limit: &RateLimit) -> Result<Admitted> {
        self.store.check_rate(scope, limit).await
    }

    /// Returns the new lease expiry (ms since the epoch).
    pub async fn refresh(&self, key: &SessionKey, token: &str, lease: Duration) -> Result<i64> {
        self.store.refresh(key, token, lease).await
    }

    /// Releases a lock whose grant never reached its caller.
    pub async fn release_unsent(&self, lock: GrantedLock) {
        self.stats.lock_waits_abandoned.fetch_add(1, Relaxed);
        // LOCK_LOST here only means it already expired or was released.
        let _ = self.store.unlock(&lock.key, &lock.token).await;
    }

    /// Applies an event of the store's invalidation feed.
    pub async fn on_feed(&self, event: FeedEvent) {
        match event {
            FeedEvent::Invalidate(key, floor) => {
                self.stats.cache_invalidations.fetch_add(1, Relaxed);
                // A watched session's follower reads its log now.
                self.watch.wake(&key);
                self.cache.invalidate(&key, floor).await;
            }
            FeedEvent::Down => {
                // Distrust first, so no read is answered from what may be
                // stale from now on; then drop it.
                self.trusted.store(false, SeqCst);
                self.epoch.fetch_add(1, SeqCst);
                self.stats.cache_feed_losses.fetch_add(1, Relaxed);
                self.cache.clear();
                tracing::warn!(
                    "invalidation feed lost: CACHED reads go to the store until it is back"
                );
            }
            FeedEvent::Up => {
                // Whatever was cached may have missed invalidations.
                self.cache.clear();
                self.epoch.fetch_add(1, SeqCst);
                self.trusted.store(true, SeqCst);
                // Wake-ups may have been lost meanwhile.
                self.watch.wake_all();
                tracing::info!("invalidation feed up: cache in use");
            }
            FeedEvent::Slots { up, ranges } => self.on_shard(up, &ranges),
        }
    }

    /// A shard's feed went down or came back: the same steps as the whole
    /// feed's, for its slots' trust.
    fn on_shard(&self, up: bool, ranges: &[(u16, u16)]) {
        let Some(slots) = &self.slots else { return };
        let set = |value: bool| {
            for &(first, last) in ranges {
                let range = usize::from(first)..=usize::from(last).min(SLOTS - 1);
                for slot in slots.get(range).unwrap_or_default() {
                    slot.store(value, SeqCst);
                }
            }
        };
        if up {
            self.cache.clear();
            self.epoch.fetch_add(1, SeqCst);
            set(true);
            // Wake-ups may have been lost meanwhile.
            self.watch.wake_all();
            tracing::info!(
                ?ranges,
                "a shard's invalidation feed is up: its sessions are cached"
            );
        } else {
            set(false);
            self.epoch.fetch_add(1, SeqCst);
            self.stats.cache_feed_losses.fetch_add(1, Relaxed);
            self.cache.clear();
            tracing::warn!(
                ?ranges,
                "a shard's invalidation feed is lost: CACHED reads of its sessions go to the store until it is back"
            );
        }
    }

    /// Whether CACHED reads may use the cache now, for every session (for
    /// GetStats).
    pub fn feed_healthy(&self) -> bool {
        self.trusted.load(Relaxed)
            && self
                .slots
                .as_ref()
                .is_none_or(|s| s.iter().all(|t| t.load(Relaxed)))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    fn cache_trusted(&self, key: &SessionKey) -> bool {
        self.cache.enabled()
            && self.trusted.load(SeqCst)
            && self.slots.as_ref().is_none_or(|slots| {
                slots
                    .get(usize::from(store::slot_of(key)))
                    .is_some_and(|t| t.load(SeqCst))
            })
    }

    /// Caches a session read from the store in feed epoch `epoch`, if the
    /// cache is trusted and the feed did not flap since.
    async fn fill(&self, key: &SessionKey, session: Arc<Session>, epoch: u64) {
        if self.cache_trusted(key) && self.epoch.load(SeqCst) == epoch {
            self.cache.fill(key, session).await;
        }
    }
}

mod operate;
#[cfg(test)]
mod tests;

pub use operate::Purged;
