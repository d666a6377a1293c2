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
//! On Redis Cluster a shard can lose its data alone, so there is a marker
//! in every 1024th slot (`<prefix>:marker:{<tag>}`, sixteen keys): each
//! master holds some of them as long as it owns at least one of those
//! slots (any layout `redis-cli --cluster create` makes), and a marker
//! moves with its slot when the slot migrates, so a resharding is not
//! mistaken for a loss.

use std::sync::atomic::Ordering::Relaxed;

use super::Inner;
use super::fault::Fault;

impl Inner {
    /// Sets the marker if it is missing. On this instance's first look, a
    /// missing marker only means nobody set it yet.
    pub(super) async fn check_marker(&self) -> Result<(), Fault> {
        let mut missing = false;
        for key in &self.markers {
            let set: Option<String> = self
                .ask(redis::cmd("SET").arg(key).arg("1").arg("NX"))
                .await?;
            missing |= set.is_some();
        }
        let first = !self.marker_seen.swap(true, Relaxed);
        if missing && !first {
            self.stats.store_data_losses.fetch_add(1, Relaxed);
            tracing::error!(
                "Redis lost its data (restart without persistence, FLUSHALL, failover to an empty replica or eviction): sessions written before are gone and their versions start again; fencing tokens stay above every one handed out before"
            );
        }
        Ok(())
    }
}

/// The marker keys under `prefix`: one, or on Redis Cluster one in every
/// 1024th slot.
pub(super) fn markers(prefix: &str, cluster: bool) -> Vec<String> {
    if !cluster {
        return vec![format!("{prefix}:marker")];
    }
    (0..super::slots::SLOTS)
        .step_by(1024)
        .filter_map(super::slots::tag_for)
        .map(|tag| format!("{prefix}:marker:{{{tag}}}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::slots::slot;
    use super::*;

    #[test]
    fn a_cluster_has_a_marker_in_every_1024th_slot() {
        assert_eq!(markers("sd", false), ["sd:marker"]);
        let keys = markers("sd", true);
        assert_eq!(keys.len(), 16);
        for (i, k) in keys.iter().enumerate() {
            let tag = k.split_once('{').unwrap().1.trim_end_matches('}');
            assert_eq!(slot(tag.as_bytes()), i as u16 * 1024, "{k}");
        }
    }
}
