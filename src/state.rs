//! What every RPC handler shares: one cheap-to-clone handle (`Arc<State>`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use tokio::sync::watch;

use crate::cache::Cache;
use crate::session::Limits;
use crate::stats::Stats;
use crate::store::Store;

pub struct State {
    pub store: Store,
    pub cache: Cache,
    pub limits: Limits,
    pub stats: Arc<Stats>,
    pub instance_id: String,
    pub started: Instant,
    /// False while the cache cannot be trusted (the invalidation feed of a
    /// shared store is down): CACHED reads then go to the store.
    cache_trusted: AtomicBool,
    /// Flips to true once shutdown begins.
    drain: watch::Sender<bool>,
}

impl State {
    pub fn new(store: Store, cache: Cache, limits: Limits, stats: Arc<Stats>) -> State {
        State {
            store,
            cache,
            limits,
            stats,
            instance_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            cache_trusted: AtomicBool::new(true),
            drain: watch::channel(false).0,
        }
    }

    pub fn cache_trusted(&self) -> bool {
        self.cache.enabled() && self.cache_trusted.load(Relaxed)
    }

    pub fn set_cache_trusted(&self, trusted: bool) {
        self.cache_trusted.store(trusted, Relaxed);
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
