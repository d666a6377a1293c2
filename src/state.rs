//! What every RPC handler shares: one cheap-to-clone handle (`Arc<State>`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Instant;

use tokio::sync::watch;

use crate::cache::Cache;
use crate::session::{Limits, Session, SessionKey};
use crate::stats::Stats;
use crate::store::{FeedEvent, Store};

pub struct State {
    pub store: Store,
    /// `None` while authentication is off.
    pub auth: Option<crate::auth::Auth>,
    pub cache: Cache,
    pub limits: Limits,
    pub stats: Arc<Stats>,
    pub instance_id: String,
    pub started: Instant,
    /// False while the cache cannot be trusted (the invalidation feed of a
    /// shared store is down): CACHED reads then go to the store.
    cache_trusted: AtomicBool,
    /// Bumped whenever the feed goes down or comes back; a read started in
    /// an older epoch does not fill the cache (it may predate a lost
    /// invalidation).
    feed_epoch: AtomicU64,
    /// Flips to true once shutdown begins.
    drain: watch::Sender<bool>,
}

impl State {
    /// `shared`: other instances write to the store too, so the cache is
    /// trusted only while the invalidation feed is up.
    pub fn new(
        store: Store,
        cache: Cache,
        limits: Limits,
        stats: Arc<Stats>,
        shared: bool,
    ) -> State {
        State {
            store,
            auth: None,
            cache,
            limits,
            stats,
            instance_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            cache_trusted: AtomicBool::new(!shared),
            feed_epoch: AtomicU64::new(0),
            drain: watch::channel(false).0,
        }
    }

    pub fn cache_trusted(&self) -> bool {
        self.cache.enabled() && self.cache_trusted.load(SeqCst)
    }

    pub fn feed_epoch(&self) -> u64 {
        self.feed_epoch.load(SeqCst)
    }

    /// Caches a session read from the store in feed epoch `epoch`, if the
    /// cache is trusted and the feed did not flap since.
    pub async fn fill_cache(&self, key: &SessionKey, session: Arc<Session>, epoch: u64) {
        if self.cache_trusted() && self.feed_epoch() == epoch {
            self.cache.fill(key, session).await;
        }
    }

    /// Applies an event of the store's invalidation feed.
    pub async fn on_feed(&self, event: FeedEvent) {
        match event {
            FeedEvent::Invalidate(key, floor) => {
                self.stats.cache_invalidations.fetch_add(1, Relaxed);
                self.cache.invalidate(&key, floor).await;
            }
            FeedEvent::Down => {
                // Distrust first, so no read is answered from what may be
                // stale from now on; then drop it.
                self.cache_trusted.store(false, SeqCst);
                self.feed_epoch.fetch_add(1, SeqCst);
                self.stats.cache_feed_losses.fetch_add(1, Relaxed);
                self.cache.clear();
                tracing::warn!(
                    "invalidation feed lost: CACHED reads go to the store until it is back"
                );
            }
            FeedEvent::Up => {
                // Whatever was cached may have missed invalidations.
                self.cache.clear();
                self.feed_epoch.fetch_add(1, SeqCst);
                self.cache_trusted.store(true, SeqCst);
                tracing::info!("invalidation feed up: cache in use");
            }
        }
    }

    /// Whether CACHED reads may use the cache now (for GetStats).
    pub fn feed_healthy(&self) -> bool {
        self.cache_trusted.load(Relaxed)
    }

    pub fn note_cache_bypass(&self) {
        if self.cache.enabled() {
            self.stats.cache_bypasses.fetch_add(1, Relaxed);
        }
    }

    pub fn start_draining(&self) {
        self.drain.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Completes once shutdown begins.
    pub async fn draining(&self) {
        let mut rx = self.drain.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}
