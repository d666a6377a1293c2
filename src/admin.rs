//! `sessiond.v1.AdminService`: the instance's counters, for operators, and
//! the operator calls on sessions (`operate`: who may make them, and their
//! translation; `page_token`: the listings' cursors as opaque text).

mod operate;
mod page_token;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tonic::{Request, Response, Status};

use crate::pb;
use crate::session::Quota;
use crate::session::SessionKey;
use crate::state::State;
use crate::stats::{Durability, Method, Summary};

pub struct AdminApi {
    state: Arc<State>,
}

impl AdminApi {
    pub fn new(state: Arc<State>) -> AdminApi {
        AdminApi { state }
    }
}

fn summary(s: Summary) -> Option<pb::LatencySummary> {
    Some(pb::LatencySummary {
        count: s.count,
        p50: s.p50,
        p90: s.p90,
        p99: s.p99,
        max: s.max,
    })
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    async fn get_stats(
        &self,
        _: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Ok(Response::new(stats_of(&self.state)))
    }

    async fn inspect_session(
        &self,
        req: Request<pb::InspectSessionRequest>,
    ) -> Result<Response<pb::InspectSessionResponse>, Status> {
        let state = &self.state;
        let ns = operate::namespace(state, &req, &req.get_ref().namespace)?;
        let key = SessionKey::in_namespace(&ns, &req.get_ref().session_id)?;
        Ok(Response::new(operate::inspect(state, &key).await?))
    }

    async fn force_unlock(
        &self,
        req: Request<pb::ForceUnlockRequest>,
    ) -> Result<Response<pb::ForceUnlockResponse>, Status> {
        let state = &self.state;
        let ns = operate::namespace(state, &req, &req.get_ref().namespace)?;
        let key = SessionKey::in_namespace(&ns, &req.get_ref().session_id)?;
        let released = state.sessions.force_unlock(&key).await?;
        Ok(Response::new(pb::ForceUnlockResponse {
            released: released.is_some(),
            released_fencing_token: released.unwrap_or(0),
        }))
    }

    async fn list_sessions(
        &self,
        req: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let ns = operate::namespace(&self.state, &req, &req.get_ref().namespace)?;
        Ok(Response::new(
            operate::list(&self.state, &ns, req.get_ref()).await?,
        ))
    }

    async fn purge_sessions(
        &self,
        req: Request<pb::PurgeSessionsRequest>,
    ) -> Result<Response<pb::PurgeSessionsResponse>, Status> {
        let ns = operate::namespace(&self.state, &req, &req.get_ref().namespace)?;
        Ok(Response::new(
            operate::purge(&self.state, &ns, req.get_ref()).await?,
        ))
    }
}

/// The store's durability as GetStats and `/metrics` show it: the embedded
/// store's is fixed; Redis's as last read.
pub fn durability_of(state: &State) -> Durability {
    if state.sessions.store().backend() == "embedded" {
        return Durability::embedded();
    }
    state.stats.durability.read().clone()
}

/// A snapshot of the counters, as GetStats returns them.
pub fn stats_of(state: &State) -> pb::GetStatsResponse {
    let s = &state.stats;
    let (entries, weighted_bytes) = state.sessions.cache().size();
    let hits = s.cache_hits.load(Relaxed);
    let misses = s.cache_misses.load(Relaxed);
    let (pool_size, pool_idle) = state.sessions.store().pool_status();
    let uptime = state.started.elapsed();
    let durability = durability_of(state);
    pb::GetStatsResponse {
        instance_id: state.instance_id.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime: Some(prost_types::Duration {
            seconds: uptime.as_secs() as i64,
            nanos: uptime.subsec_nanos() as i32,
        }),
        store_backend: state.sessions.store().backend().to_owned(),
        cache: Some(pb::CacheStats {
            entries,
            weighted_bytes,
            hits,
            misses,
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            evictions: s.cache_evictions.load(Relaxed),
            invalidations_received: s.cache_invalidations.load(Relaxed),
            bypasses: s.cache_bypasses.load(Relaxed),
            feed_healthy: state.sessions.feed_healthy(),
            feed_losses: s.cache_feed_losses.load(Relaxed),
        }),
        locks: Some(pb::LockStats {
            acquisitions: s.lock_acquisitions.load(Relaxed),
            contended: s.lock_contended.load(Relaxed),
            waits_granted: s.lock_waits_granted.load(Relaxed),
            waits_abandoned: s.lock_waits_abandoned.load(Relaxed),
            waiting_now: s.lock_waiting_now.load(Relaxed),
            lease_expiries: s.lock_lease_expiries.load(Relaxed),
            stale_token_rejections: s.lock_stale_token.load(Relaxed),
            held_rejections: s.lock_held_rejections.load(Relaxed),
            forced_releases: s.lock_forced_releases.load(Relaxed),
            superseded: s.lock_superseded.load(Relaxed),
            replayed: s.lock_replayed.load(Relaxed),
            wait_ms: summary(s.lock_wait_ms.summary()),
        }),
        store: Some(pb::StoreStats {
            healthy: s.store_healthy.load(Relaxed),
            errors: s.store_errors.load(Relaxed),
            pool_size,
            pool_idle,
            durability: durability.setting.to_owned(),
            durability_wait: durability.wait,
            durability_warnings: durability.risks.into_iter().map(|(_, why)| why).collect(),
            durability_failures: s.durability_failures.load(Relaxed),
            data_losses: s.store_data_losses.load(Relaxed),
        }),
        rpcs: Method::ALL
            .iter()
            .map(|m| {
                let r = s.rpc(*m);
                pb::RpcStats {
                    method: m.name().to_owned(),
                    calls: r.calls.load(Relaxed),
                    errors: r.errors.load(Relaxed),
                    latency_us: summary(r.latency_us.summary()),
                }
            })
            .collect(),
        quotas: Some(pb::QuotaStats {
            max_sessions_per_namespace: state.limits.quotas.max_sessions,
            max_bytes_per_namespace: state.limits.quotas.max_bytes,
            session_refusals: s.quota_refusals(Quota::Sessions),
            byte_refusals: s.quota_refusals(Quota::Bytes),
        }),
        watch: Some(pb::WatchStats {
            watchers: s.watchers.load(Relaxed),
            events_sent: s.watch_events.load(Relaxed),
            lagged: s.watch_lagged.load(Relaxed),
        }),
    }
}
