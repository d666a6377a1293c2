//! Noticing that Redis lost its data. A marker key (`<prefix>:marker`, no
//! TTL) is set by the first instance that finds none and looked for at
//! every check of the server's settings (at start, every
//! `--redis-check-interval`, and shortly after any connection reopened, as
//! after a Redis restart). Gone means the data went with it: a restart
//! without persistence, a FLUSHALL, a failover to an empty replica, or an
//! eviction. sessiond cannot bring sessions back; it says so (an error in
//! the log, `store.data_losses` in GetStats,
//! `sessiond_store_data_losses_total`), while fencing tokens stay safe
//! (floored by the Redis clock, see `prelude.lua`) and a read whose
//! `min_version` the store no longer has fails with VERSION_LOST.
//!
//! On Redis Cluster the marker lives on one shard: a loss on another goes
//! unseen here.

use std::sync::atomic::Ordering::Relaxed;

use super::Inner;
use super::fault::Fault;

impl Inner {
    /// Sets the marker if it is missing. On this instance's first look, a
    /// missing marker only means nobody set it yet.
    pub(super) async fn check_marker(&self) -> Result<(), Fault> {
        let key = format!("{}:marker", self.prefix);
        let set: Option<String> = self
            .ask(redis::cmd("SET").arg(&key).arg("1").arg("NX"))
            .await?;
        let first = !self.marker_seen.swap(true, Relaxed);
        if set.is_some() && !first {
            self.stats.store_data_losses.fetch_add(1, Relaxed);
            tracing::error!(
                "Redis lost its data (restart without persistence, FLUSHALL, failover to an empty replica or eviction): sessions written before are gone and their versions start again; fencing tokens stay above every one handed out before"
            );
        }
        Ok(())
    }
}
