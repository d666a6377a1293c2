//! `sessiond.v1.SessionService`: a thin translation between gRPC messages and
//! the semantics in `session`, `cache` and `store`. Validation of requests and
//! the mapping of errors to statuses happen here, at the edge, and nowhere
//! deeper.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::error::{Error, InvalidReason, Result};
use crate::pb;
use crate::server::GrantedLock;
use crate::session::{self, Guards, Mutation, SessionKey};
use crate::state::State;

pub struct SessionApi {
    state: Arc<State>,
}

impl SessionApi {
    pub fn new(state: Arc<State>) -> SessionApi {
        SessionApi { state }
    }
}

/// The key of a call's session: its namespace comes from the caller's
/// credentials when authentication is on, else it is the default one.
fn key_of<T>(state: &State, req: &Request<T>, session_id: &str) -> Result<SessionKey> {
    let Some(auth) = &state.auth else {
        return SessionKey::in_namespace(session::default_namespace(), session_id);
    };
    let header = |name: &str| req.metadata().get(name).and_then(|v| v.to_str().ok());
    let namespace = auth.namespace(
        header("authorization"),
        header(crate::auth::NAMESPACE_HEADER),
    )?;
    SessionKey::in_namespace(&namespace, session_id)
}

fn token_of(token: &str) -> Result<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    session::check_token(token)?;
    Ok(Some(token.to_owned()))
}

fn require_token(token: &str) -> Result<String> {
    token_of(token)?.ok_or_else(|| {
        Error::invalid(
            InvalidReason::LockToken,
            "lock_token is required: pass the token LockSession returned",
        )
    })
}

fn guards(lock_token: &str, expected_version: Option<u64>, release_lock: bool) -> Result<Guards> {
    let lock_token = token_of(lock_token)?;
    if release_lock && lock_token.is_none() {
        return Err(Error::invalid(
            InvalidReason::LockToken,
            "release_lock needs lock_token: only the holder can release the lock",
        ));
    }
    Ok(Guards {
        lock_token,
        expected_version,
        release_lock,
    })
}

#[tonic::async_trait]
impl pb::session_service_server::SessionService for SessionApi {
    async fn get_session(
        &self,
        req: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let r = req.get_ref();
        let strong = r.consistency() == pb::Consistency::Strong;
        let st = &self.state;
        let epoch = st.feed_epoch();
        if !strong && st.cache_trusted() {
            if let Some(s) = st.cache.get(&key, r.min_version).await {
                return Ok(Response::new(pb::GetSessionResponse {
                    session: Some(pb::Session::from_session(&key.id, &s)),
                    from_cache: true,
                }));
            }
        } else if !strong {
            st.note_cache_bypass();
        }
        let session = st.store.get(&key).await?.ok_or(Error::NotFound)?;
        let session = Arc::new(session);
        st.fill_cache(&key, session.clone(), epoch).await;
        Ok(Response::new(pb::GetSessionResponse {
            session: Some(pb::Session::from_session(&key.id, &session)),
            from_cache: false,
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
        let wait = st.limits.wait(r.wait_ms)?;
        // Never wait past the caller's own deadline: a grant it cannot
        // receive would hold the lock for nobody.
        let wait = match grpc_timeout(&req) {
            Some(deadline) if !wait.is_zero() => wait.min(deadline.saturating_sub(DEADLINE_MARGIN)),
            _ => wait,
        };
        // The session that comes with the grant is not cached: the holder
        // is about to write it, which would only replace the entry again.
        let grant = tokio::select! {
            grant = st.store.lock(&key, lease, wait) => grant?,
            () = st.draining() => return Err(Error::ShuttingDown.into()),
        };
        let mut response = Response::new(pb::LockSessionResponse {
            lock_token: grant.token.clone(),
            fencing_token: grant.fence,
            lease_expires_at: pb::timestamp(grant.lease_expires_ms),
            session: grant
                .session
                .as_ref()
                .map(|s| pb::Session::from_session(&key.id, s)),
        });
        // If this answer never reaches the caller (it cancelled or went away
        // just as the lock was granted), the middleware releases the lock.
        response.extensions_mut().insert(GrantedLock {
            key,
            token: grant.token,
        });
        Ok(response)
    }

    async fn update_session(
        &self,
        req: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let r = req.into_inner();
        let g = guards(&r.lock_token, r.expected_version, r.release_lock)?;
        let mut delete = r.delete_fields;
        delete.sort_unstable();
        delete.dedup();
        let m = Mutation {
            set: r.set_fields.into_iter().collect(),
            delete,
            replace: r.replace,
        };
        self.state.limits.check_mutation(&m)?;
        let written = self.state.store.update(&key, m, g).await?;
        self.state.cache.invalidate(&key, written.version).await;
        Ok(Response::new(pb::UpdateSessionResponse {
            version: written.version,
            expires_at: pb::timestamp(written.expires_ms),
        }))
    }

    async fn unlock_session(
        &self,
        req: Request<pb::UnlockSessionRequest>,
    ) -> Result<Response<pb::UnlockSessionResponse>, Status> {
        let key = key_of(&self.state, &req, &req.get_ref().session_id)?;
        let token = require_token(&req.get_ref().lock_token)?;
        self.state.store.unlock(&key, &token).await?;
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
        let expires = self.state.store.refresh(&key, &token, lease).await?;
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
        let g = guards(&r.lock_token, r.expected_version, r.release_lock)?;
        let deleted = self.state.store.delete(&key, g).await?;
        if let Some(version) = deleted {
            // A re-created session starts above the deleted one's version.
            self.state.cache.invalidate(&key, version + 1).await;
        }
        Ok(Response::new(pb::DeleteSessionResponse {
            deleted: deleted.is_some(),
        }))
    }
}

/// Time kept between the end of a lock wait and the caller's deadline, for
/// the answer to reach it.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(50);

/// The caller's deadline (`grpc-timeout`), if it sent one.
fn grpc_timeout<T>(req: &Request<T>) -> Option<std::time::Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => std::time::Duration::from_secs(n.saturating_mul(3600)),
        "M" => std::time::Duration::from_secs(n.saturating_mul(60)),
        "S" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_millis(n),
        "u" => std::time::Duration::from_micros(n),
        "n" => std::time::Duration::from_nanos(n),
        _ => return None,
    })
}
