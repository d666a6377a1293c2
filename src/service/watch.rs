//! WatchSession at the edge: the request checked, the core's events
//! translated, and the stream ended by the drain.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::Status;

use crate::conn::InFlight;
use crate::error::Error;
use crate::pb;
use crate::pb::watch_session_response::Event as PbEvent;
use crate::state::State;
use crate::watch::{Event, Events, Watched};

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchSessionResponse, Status>> + Send>>;

/// The stream of a watch: its events until the watch ends (an error) or the
/// server drains (SHUTTING_DOWN).
pub fn stream(
    state: Arc<State>,
    id: String,
    events: Events,
    values: bool,
    busy: Option<InFlight>,
) -> WatchStream {
    let stream = futures::stream::unfold(Some(events), move |events| {
        // Held for as long as the stream is.
        let _busy = &busy;
        let state = state.clone();
        let id = id.clone();
        async move {
            let mut events = events?;
            let next = tokio::select! {
                biased;
                () = state.draining() => Err(Error::ShuttingDown),
                next = events.next() => next.unwrap_or(Err(Error::StoreUnavailable(
                    "the watch ended; watch again with after_version".into(),
                ))),
            };
            Some(match next {
                Ok(w) => (Ok(response(&id, w, values)), Some(events)),
                Err(e) => (Err(Status::from(e)), None),
            })
        }
    });
    Box::pin(stream)
}

fn response(id: &str, w: Watched, values: bool) -> pb::WatchSessionResponse {
    let event = match w.event {
        Event::Snapshot {
            session,
            lock,
            resync,
        } => PbEvent::Snapshot(pb::WatchSnapshot {
            session: session.map(|s| pb::Session::from_session(id, &s)),
            resync,
            lock: lock.map(|(fence, until)| pb::WatchLock {
                fencing_token: fence,
                lease_expires_at: pb::timestamp(until),
            }),
        }),
        Event::Resumed { after } => PbEvent::Resumed(pb::WatchResumed {
            after_version: after,
        }),
        Event::Changed(c) => PbEvent::Changed(pb::WatchChanged {
            set_fields: c.set.iter().map(|(k, _)| k.clone()).collect(),
            removed_fields: c.removed.clone(),
            replaced: c.replaced,
            values: if values {
                c.set.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            } else {
                Default::default()
            },
            expires_at: pb::timestamp(c.expires_ms),
            created: c.created,
        }),
        Event::Acquired {
            fence,
            lease_expires_ms,
        } => PbEvent::LockAcquired(pb::WatchLockAcquired {
            fencing_token: fence,
            lease_expires_at: pb::timestamp(lease_expires_ms),
        }),
        Event::Released { fence } => PbEvent::LockReleased(pb::WatchLockReleased {
            fencing_token: fence,
        }),
        Event::Expired { fence } => PbEvent::LockExpired(pb::WatchLockExpired {
            fencing_token: fence,
        }),
        Event::Forced { fence } => PbEvent::LockForced(pb::WatchLockForced {
            fencing_token: fence,
        }),
        Event::Deleted => PbEvent::Deleted(pb::WatchDeleted {}),
        Event::IdleExpired => PbEvent::IdleExpired(pb::WatchIdleExpired {}),
    };
    pb::WatchSessionResponse {
        version: w.version,
        event: Some(event),
    }
}
