//! WatchSession on the embedded store: the actor, the only writer, logs the
//! steps of a watched session (see `crate::watch`) in a ring of the last
//! [`LOG_LEN`] entries per session, appended only once their batch commits
//! (a rolled back batch logs nothing), and wakes the session's follower.
//!
//! A session is watched from the actor's `WatchBegin` command on, which
//! reads the snapshot in the same batch as the writes around it, so the
//! snapshot and the log's position agree; its ring goes [`LINGER`] after
//! the follower last kept it. A resume older than the ring, or after a
//! restart (the ring is in memory), gets a snapshot.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::actor::Command;
use super::{EmbeddedStore, encode_key};
use crate::error::Result;
use crate::session::SessionKey;
use crate::watch::{Begin, Entry, LINGER, LOG_LEN, Pos};

/// The rings of the watched sessions, shared by the actor (which appends)
/// and the followers (which read).
#[derive(Default)]
pub(super) struct Logs {
    rings: Mutex<HashMap<Vec<u8>, Ring>>,
    /// How many rings there are: the actor's fast way to see that nothing
    /// is watched, without the lock.
    count: AtomicUsize,
}

struct Ring {
    entries: VecDeque<Entry>,
    /// The position of the last entry dropped off the front.
    dropped: Pos,
    /// Dropped after this, unless kept.
    until: Instant,
    notify: Arc<Notify>,
}

impl Logs {
    /// Whether the actor logs `key`'s steps.
    pub(super) fn watched(&self, key: &[u8]) -> bool {
        self.count.load(Relaxed) > 0 && self.rings.lock().contains_key(key)
    }

    /// Starts (or keeps) logging `key`; its entries so far.
    pub(super) fn begin(&self, key: &[u8], notify: Arc<Notify>) -> Vec<Entry> {
        let mut rings = self.rings.lock();
        let until = Instant::now() + LINGER;
        let ring = rings.entry(key.to_vec()).or_insert_with(|| Ring {
            entries: VecDeque::new(),
            dropped: (0, 0),
            until,
            notify: notify.clone(),
        });
        ring.until = until;
        ring.notify = notify;
        let entries = ring.entries.iter().cloned().collect();
        self.count.store(rings.len(), Relaxed);
        entries
    }

    /// Appends the entries of a committed batch and wakes their followers.
    pub(super) fn append(&self, noted: Vec<(Vec<u8>, Entry)>) {
        let mut rings = self.rings.lock();
        for (key, entry) in noted {
            if let Some(ring) = rings.get_mut(&key) {
                if ring.entries.len() >= LOG_LEN
                    && let Some(old) = ring.entries.pop_front()
                {
                    ring.dropped = old.pos;
                }
                ring.entries.push_back(entry);
                ring.notify.notify_one();
            }
        }
    }

    /// The entries after `after`; `None` when some of them are gone.
    fn read(&self, key: &[u8], after: Pos) -> Option<Vec<Entry>> {
        let rings = self.rings.lock();
        let ring = rings.get(key)?;
        if after < ring.dropped {
            return None;
        }
        Some(
            ring.entries
                .iter()
                .filter(|e| e.pos > after)
                .cloned()
                .collect(),
        )
    }

    /// Keeps `key`'s ring for [`LINGER`] more, and drops the rings whose
    /// time is over.
    fn keep(&self, key: &[u8]) {
        let mut rings = self.rings.lock();
        let now = Instant::now();
        if let Some(ring) = rings.get_mut(key) {
            ring.until = now + LINGER;
        }
        rings.retain(|_, r| r.until > now);
        self.count.store(rings.len(), Relaxed);
    }
}

impl EmbeddedStore {
    /// The snapshot and log of `key`, logged from now on (an actor command:
    /// see the module doc).
    pub async fn watch_begin(&self, key: &SessionKey, notify: &Arc<Notify>) -> Result<Begin> {
        self.call(|reply| Command::WatchBegin {
            key: encode_key(key),
            notify: notify.clone(),
            reply,
        })
        .await
    }

    /// The entries of `key`'s log after `after`; `None` when the ring no
    /// longer holds them all.
    pub async fn watch_read(&self, key: &SessionKey, after: Pos) -> Result<Option<Vec<Entry>>> {
        Ok(self.logs.read(&encode_key(key), after))
    }

    pub async fn watch_keep(&self, key: &SessionKey) -> Result<()> {
        self.logs.keep(&encode_key(key));
        Ok(())
    }
}
