//! The operator calls of AdminService: who may make them (the admin grant,
//! in the namespace asked for), their validation, and the translation to
//! and from the core.

use std::sync::Arc;

use tonic::Request;
use tonic::metadata::MetadataMap;

use super::page_token;
use crate::auth::{NAMESPACE_HEADER, valid_namespace};
use crate::error::{Error, InvalidReason, Result};
use crate::pb;
use crate::session::{DEFAULT_NAMESPACE, Inspection, SessionKey, page_size};
use crate::state::State;

/// The namespace an operator call acts in: the request's `namespace`, else
/// the `sessiond-namespace` metadata, else the token's first (`default`
/// with authentication off). With authentication on, the token must carry
/// the admin grant for it.
pub fn namespace<T>(state: &State, req: &Request<T>, asked: &str) -> Result<Arc<str>> {
    let wanted = match asked {
        "" => header(req.metadata(), NAMESPACE_HEADER)?,
        ns => Some(ns),
    };
    if wanted.is_some_and(|ns| !valid_namespace(ns)) {
        return Err(Error::invalid(
            InvalidReason::Namespace,
            "namespace must be 1..=64 of [A-Za-z0-9._-]",
        ));
    }
    match &state.auth {
        Some(auth) => auth.admin_namespace(header(req.metadata(), "authorization")?, wanted),
        None => Ok(Arc::from(wanted.unwrap_or(DEFAULT_NAMESPACE))),
    }
}

/// The one value of `name`, if any; repeated, or not visible ASCII, it is
/// refused rather than guessed at.
fn header<'a>(metadata: &'a MetadataMap, name: &str) -> Result<Option<&'a str>> {
    let mut values = metadata.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(match name {
            NAMESPACE_HEADER => Error::invalid(
                InvalidReason::Namespace,
                "send `sessiond-namespace` at most once",
            ),
            _ => Error::Unauthenticated(
                "send one `authorization: Bearer <token>`, not several".into(),
            ),
        });
    }
    Ok(first.to_str().ok())
}

/// The id prefix of a listing: empty, or what could begin a session id.
pub fn prefix(namespace: &Arc<str>, prefix: &str) -> Result<()> {
    if !prefix.is_empty() {
        SessionKey::in_namespace(namespace, prefix)?;
    }
    Ok(())
}

pub async fn inspect(state: &State, key: &SessionKey) -> Result<pb::InspectSessionResponse> {
    let seen = state.sessions.inspect(key).await?;
    Ok(inspection(state, seen))
}

fn inspection(state: &State, seen: Inspection) -> pb::InspectSessionResponse {
    let ts = pb::timestamp;
    let session = seen.session.as_ref();
    pb::InspectSessionResponse {
        exists: session.is_some(),
        version: session.map_or(0, |s| s.version),
        field_count: session.map_or(0, |s| u32::try_from(s.fields.len()).unwrap_or(u32::MAX)),
        size_bytes: session.map_or(0, |s| s.fields.bytes()),
        expires_at: session.and_then(|s| ts(s.expires_ms)),
        lock: seen.holder.map(|h| pb::LockHolder {
            fencing_token: h.fence,
            lease_expires_at: ts(h.lease_expires_ms),
            held_since: ts(h.since_ms),
            instance: h.instance.unwrap_or_else(|| {
                state
                    .instance_id
                    .get(..16)
                    .unwrap_or(&state.instance_id)
                    .to_owned()
            }),
        }),
        waiters: seen.waiters,
        oldest_wait_ms: seen.oldest_wait_ms,
    }
}

pub async fn list(
    state: &State,
    namespace: &Arc<str>,
    r: &pb::ListSessionsRequest,
) -> Result<pb::ListSessionsResponse> {
    prefix(namespace, &r.id_prefix)?;
    let cursor = page_token::decode(&r.page_token)?;
    let page = state
        .sessions
        .list(namespace, &r.id_prefix, &cursor, page_size(r.page_size))
        .await?;
    Ok(pb::ListSessionsResponse {
        session_ids: page.ids,
        next_page_token: page_token::encode(page.next.as_ref()),
    })
}

pub async fn purge(
    state: &State,
    namespace: &Arc<str>,
    r: &pb::PurgeSessionsRequest,
) -> Result<pb::PurgeSessionsResponse> {
    if r.id_prefix.is_empty() {
        return Err(Error::invalid(
            InvalidReason::SessionId,
            "id_prefix is required: name the ids to purge (a whole namespace is not purged by an empty prefix)",
        ));
    }
    prefix(namespace, &r.id_prefix)?;
    let cursor = page_token::decode(&r.page_token)?;
    let purged = state
        .sessions
        .purge(namespace, &r.id_prefix, &cursor, page_size(r.page_size))
        .await?;
    tracing::info!(
        namespace = %namespace,
        deleted = purged.deleted,
        done = purged.next.is_none(),
        "sessions purged"
    );
    Ok(pb::PurgeSessionsResponse {
        deleted: purged.deleted,
        next_page_token: page_token::encode(purged.next.as_ref()),
    })
}
