//! `sessiond.v1.SessionService`: validation of requests and translation
//! between gRPC messages and the session core (`sessions.rs`). No rule of
//! sessiond's lives here; the core knows nothing of gRPC.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::pb;
use crate::session::{Idempotency, LockRequest, RateLimit, RateScope};
use crate::sessions::{Consistency, GrantedLock};
use crate::state::State;

mod request;
mod watch;

use request::{deadline_wait, guards, key_of, ops_of, require_token, share_of};

pub struct SessionApi {
    state: Arc<State>,
}

impl SessionApi {
    pub fn new(state: Arc<State>) -> SessionApi {
        SessionApi { state }
    }
}

/// The scope and validated arguments of a rate limit a request names.
fn rate_of<T>(
    state: &State,
    req: &Request<T>,
    session_id: &str,
    spec: &pb::RateLimit,
) -> crate::error::Result<(RateScope, RateLimit)> {
    let scope = match spec.scope() {
        pb::RateScope::Namespace => RateScope::Namespace(share_of(state, req)?.namespace.clone()),
        pb::RateScope::Session => RateScope::Session(key_of(state, req, session_id)?),
    };
    let limit = RateLimit::new(
        &spec.name,
        spec.per_second,
        spec.burst,
        spec.cost,
        state.limits.rate_default,
    )?;
    Ok((scope, limit))
}

#[tonic::async_trait]
impl pb::session_service_server::SessionService for SessionApi {
    type WatchSessionStream = watch::WatchStream;

    /// The stream outlives the call's admission: the slot of
    /// `--max-concurrent-calls` is handed back once the stream begins, and
    /// the watcher counts against `--max-watchers` instead (see `watch.rs`).
    async fn watch_session(
        &self,
        req: Request<pb::WatchSessionRequest>,
    ) -> Result<Response<Self::WatchSessionStream>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let r = req.get_ref();
        let events = self.state.sessions.watch(&key, r.after_version)?;
        // The connection counts the stream as a call until it ends, so that
        // --connection-idle-timeout does not close it under a quiet watch.
        let busy = req
            .extensions()
            .get::<crate::conn::OpenCall>()
            .map(crate::conn::OpenCall::hold);
        Ok(Response::new(watch::stream(
            self.state.clone(),
            r.session_id.clone(),
            events,
            r.include_values,
            busy,
        )))
    }

    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let r = req.get_ref();
        let consistency = match r.consistency() {
            pb::Consistency::Strong => Consistency::Strong,
            _ => Consistency::Cached,
        };
        let read = self
            .state
            .sessions
            .get(&key, consistency, r.min_version)
            .await?;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(pb::Session::from_session(&key.id, &read.session)),
            from_cache: read.from_cache,
        }))
    }

    async fn lock_session(
        &self,
        req: Request<pb::LockSessionRequest>,
    ) -> Result<Response<pb::LockSessionResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let r = req.get_ref();
        let st = &self.state;
        let lease = st.limits.lease(r.lease_ms)?;
        let asked = st.limits.wait(r.wait_ms)?;
        // Checked against the wait asked for: a deadline that cuts it short
        // ends the wait, it does not make the request malformed.
        let turn = st
            .limits
            .turn(r.policy, r.debounce_ms, r.payload.clone(), asked)?;
        let wait = deadline_wait(&req, asked);
        let idempotency = Idempotency::of_lock(&r.idempotency_key, lease, &turn)?;
        if let Some(spec) = &r.rate_limit {
            // Before the caller takes a waiter's place: a refused caller
            // never queues.
            let (scope, limit) = rate_of(st, &req, &r.session_id, spec)?;
            st.sessions.check_rate(&scope, &limit).await?;
        }
        // A caller that may queue counts as a waiter of its session and
        // namespace until its wait ends (see server/shares.rs).
        let waiting = if wait.is_zero() {
            None
        } else {
            Some(st.shares.wait(share_of(st, &req)?, &key)?)
        };
        let grant = tokio::select! {
            grant = st.sessions.lock(&key, LockRequest { lease, wait, turn, idempotency }) => grant?,
            () = st.draining() => return Err(crate::error::Error::ShuttingDown.into()),
        };
        drop(waiting);
        let mut response = Response::new(pb::LockSessionResponse {
            lock_token: grant.token.clone(),
            fencing_token: grant.fence,
            lease_expires_at: pb::timestamp(grant.lease_expires_ms),
            session: grant
                .session
                .as_ref()
                .map(|s| pb::Session::from_session(&key.id, s)),
            superseded_payloads: grant.superseded.payloads,
            superseded_dropped: grant.superseded.dropped,
            replayed: grant.replayed,
        });
        // If this answer never reaches the caller (it cancelled or went away
        // just as the lock was granted), the server releases the lock. Not a
        // replayed answer's: that grant was made for an earlier call, which
        // may still be using it.
        if !grant.replayed {
            response.extensions_mut().insert(GrantedLock {
                key,
                token: grant.token,
            });
        }
        Ok(response)
    }

    async fn update_session(
        &self,
        req: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let r = req.into_inner();
        let mut g = guards(&r.lock_token, r.expected_version, r.release_lock)?;
        let mut m = crate::session::Mutation {
            set: r.set_fields.into_iter().collect(),
            delete: r.delete_fields,
            replace: r.replace,
            ops: ops_of(r.ops)?,
        };
        // Checked before anything costs more than the request's size.
        self.state.limits.check_mutation(&m)?;
        m.delete.sort_unstable();
        m.delete.dedup();
        g.idempotency = Idempotency::of_update(&r.idempotency_key, &m)?;
        let written = self.state.sessions.update(&key, m, g).await?;
        Ok(Response::new(pb::UpdateSessionResponse {
            version: written.version,
            expires_at: pb::timestamp(written.expires_ms),
            op_values: written.op_values,
        }))
    }

    async fn unlock_session(
        &self,
        req: Request<pb::UnlockSessionRequest>,
    ) -> Result<Response<pb::UnlockSessionResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let token = require_token(&req.get_ref().lock_token)?;
        self.state.sessions.unlock(&key, &token).await?;
        Ok(Response::new(pb::UnlockSessionResponse {}))
    }

    async fn refresh_lock(
        &self,
        req: Request<pb::RefreshLockRequest>,
    ) -> Result<Response<pb::RefreshLockResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let r = req.get_ref();
        let token = require_token(&r.lock_token)?;
        let lease = self.state.limits.lease(r.lease_ms)?;
        let expires = self.state.sessions.refresh(&key, &token, lease).await?;
        Ok(Response::new(pb::RefreshLockResponse {
            lease_expires_at: pb::timestamp(expires),
        }))
    }

    async fn delete_session(
        &self,
        req: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let r = req.get_ref();
        let mut g = guards(&r.lock_token, r.expected_version, r.release_lock)?;
        g.idempotency = Idempotency::of_delete(&r.idempotency_key)?;
        let deleted = self.state.sessions.delete(&key, g).await?;
        Ok(Response::new(pb::DeleteSessionResponse { deleted }))
    }

    async fn check_rate(
        &self,
        req: Request<pb::CheckRateRequest>,
    ) -> Result<Response<pb::CheckRateResponse>, Status> {
        let r = req.get_ref();
        let spec = pb::RateLimit {
            name: r.name.clone(),
            scope: r.scope,
            per_second: r.per_second,
            burst: r.burst,
            cost: r.cost,
        };
        let (scope, limit) = rate_of(&self.state, &req, &r.session_id, &spec)?;
        let admitted = self.state.sessions.check_rate(&scope, &limit).await?;
        Ok(Response::new(pb::CheckRateResponse {
            remaining: admitted.remaining,
            reset_after_ms: admitted.reset_after_us.div_ceil(1000),
        }))
    }
}
