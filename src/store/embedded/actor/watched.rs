//! What the actor logs of a watched session's steps (see
//! `embedded/watch.rs`): nothing at all for a session nobody watches.

use std::sync::Arc;
use std::time::Instant;

use redb::WriteTransaction;
use tokio::sync::Notify;

use super::Actor;
use crate::session::{Mutation, Written};
use crate::store::embedded::outcome::Fault;
use crate::store::embedded::tables;
use crate::store::now_ms;
use crate::watch::{Begin, Change, LOG_VALUE_BYTES, Logged};

impl Actor {
    /// For a watched session, whether a write now creates it (no live
    /// session before it); `None` when it is not watched.
    pub(super) fn creates(
        &self,
        txn: &WriteTransaction,
        key: &[u8],
        now_ms: i64,
    ) -> Result<Option<bool>, Fault> {
        if !self.watched(key) {
            return Ok(None);
        }
        let live = tables::read_session(&txn.open_table(tables::SESSIONS)?, key, now_ms)?;
        Ok(Some(live.is_none()))
    }

    /// Logs a write of a watched session.
    pub(super) fn note_change(&mut self, key: &[u8], m: &Mutation, w: &Written, created: bool) {
        let bytes: usize = m.set.iter().map(|(_, v)| v.len()).sum::<usize>()
            + w.op_values.iter().map(|v| v.len()).sum::<usize>();
        if bytes > LOG_VALUE_BYTES {
            self.note(key, Logged::Gap { version: w.version });
            return;
        }
        let mut set: Vec<(String, bytes::Bytes)> = m.set.clone();
        set.extend(
            m.ops
                .iter()
                .map(|op| op.field.clone())
                .zip(w.op_values.iter().cloned()),
        );
        set.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut removed = m.delete.clone();
        removed.sort_unstable();
        let change = Change {
            version: w.version,
            created,
            set,
            removed,
            replaced: m.replace,
            expires_ms: w.expires_ms,
        };
        self.note(key, Logged::Changed(Arc::new(change)));
    }

    pub(super) fn note_delete(&mut self, key: &[u8], version: u64) {
        if self.watched(key) {
            self.note(key, Logged::Deleted { version });
        }
    }

    /// Logs the release of a watched session's lock, before it is made.
    pub(super) fn note_release(&mut self, key: &[u8], now: Instant) {
        if !self.watched(key) {
            return;
        }
        if let Some((fence, _, _)) = self.locks.view(key, now).holder {
            self.note(key, Logged::Released { fence });
        }
    }

    /// WatchBegin: the session is logged from here on; its snapshot, lock
    /// and log, at this step's position.
    pub(super) fn watch_begin(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        notify: Arc<Notify>,
        now: Instant,
    ) -> Result<Begin, Fault> {
        let log = self.logs.begin(key, notify);
        let session = tables::read_session(&txn.open_table(tables::SESSIONS)?, key, now_ms())?;
        let lock = self
            .locks
            .view(key, now)
            .holder
            .map(|(fence, until, _)| (fence, until));
        Ok(Begin {
            session,
            lock,
            log,
            last: (self.seq, 0),
        })
    }
}
