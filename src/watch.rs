//! WatchSession's core: the events of a session as the store logs them, the
//! events a watcher is sent, and the [`Hub`] of this instance's watchers.
//!
//! The store logs what its atomic steps do to a watched session (a write, a
//! delete, a grant, a release, a forced release), in the step itself: the
//! actor of the embedded store after its batch commits, a Lua script on
//! Redis (a capped stream in the session's slot, see `store/redis/watch.rs`).
//! Nothing is logged for a session nobody watches.
//!
//! Each watched session has one *follower* on each instance with watchers
//! of it (`watch/follow.rs`): a task that reads the session's log after the
//! position it has reached, when woken (by the actor, or by the invalidation
//! feed on Redis) and every [`HEARTBEAT`] (pub/sub is at most once), turns
//! entries into events, and hands them to its watchers. What no step logs,
//! a lease that ran out and an idle expiry, the follower infers: from the
//! log (a grant to another fence, a write that creates the session again),
//! or when the lease or the idle TTL is due and the store confirms it.
//!
//! Bounds: each watcher has a buffer of [`WATCH_BUFFER`] events; one that
//! fills it is ended (WATCH_LAGGED) and resumes from its version. Watchers
//! are counted per namespace and in all, and refused beyond
//! `--max-watchers-per-namespace` and `--max-watchers` (OVERLOADED).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc};

use crate::error::{Error, Result};
use crate::session::{Session, SessionKey};
use crate::stats::Stats;
use crate::store::Store;

mod follow;

/// How often a follower reads its session's log without being woken, and
/// checks its watchers, the lease and the idle TTL.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Events buffered for one watcher before it counts as lagging.
pub const WATCH_BUFFER: usize = 512;
/// How long a follower (and the store's log of its session) outlives its
/// last watcher, so that a watcher that reconnects can resume.
pub const LINGER: Duration = Duration::from_secs(30);
/// Entries kept in a session's log (the embedded ring; Redis trims its
/// stream to about this many).
pub const LOG_LEN: usize = 1024;
/// The most bytes of values one logged write carries; a larger write is
/// logged as a `Gap` (its watchers get a snapshot, which has the values), so
/// a session's log holds at most `LOG_LEN` times this of values.
pub const LOG_VALUE_BYTES: usize = 16 * 1024;
/// The most entries a store answers one read of a log with (Redis's
/// watch_read.lua); a follower reads again while it gets this many.
pub const READ_BATCH: usize = 1024;

/// A position in a session's log: a Redis stream id (ms, sequence), or the
/// embedded store's sequence number and 0. Later entries have greater ones.
pub type Pos = (u64, u64);

/// A write, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub version: u64,
    /// No live session was there before it.
    pub created: bool,
    /// The fields set (by a set or a field operation) and their new values,
    /// in name order.
    pub set: Vec<(String, Bytes)>,
    /// The names the write asked to delete, in name order.
    pub removed: Vec<String>,
    /// Every field not in `set` is gone.
    pub replaced: bool,
    pub expires_ms: i64,
}

/// What a step did to a watched session, as the store logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logged {
    Changed(Arc<Change>),
    /// The session, at this version, was deleted.
    Deleted {
        version: u64,
    },
    Acquired {
        fence: u64,
        lease_expires_ms: i64,
    },
    Released {
        fence: u64,
    },
    Forced {
        fence: u64,
    },
    /// A follower began here (Redis: an entry of its own, so that every
    /// position is one the log holds); no event.
    Began,
    /// A write of this version too large to log (see `LOG_VALUE_BYTES`):
    /// its watchers get a fresh snapshot.
    Gap {
        version: u64,
    },
}

/// One entry of a session's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub pos: Pos,
    pub logged: Logged,
}

/// A held lock: its fence and when its lease ends (ms since the epoch).
pub type LockView = Option<(u64, i64)>;

/// What the store answers a follower that begins (or begins again): the
/// session and its lock now, the session's recent log (oldest first, up to
/// now) and the position of now. The store logs the session from then on,
/// for [`LINGER`] after the last [`Store::watch_keep`].
#[derive(Debug, Clone)]
pub struct Begin {
    pub session: Option<Session>,
    pub lock: LockView,
    pub log: Vec<Entry>,
    pub last: Pos,
}

/// What a watcher is sent.
#[derive(Debug, Clone)]
pub enum Event {
    Snapshot {
        session: Option<Arc<Session>>,
        lock: LockView,
        resync: bool,
    },
    Resumed {
        after: u64,
    },
    Changed(Arc<Change>),
    Acquired {
        fence: u64,
        lease_expires_ms: i64,
    },
    Released {
        fence: u64,
    },
    Expired {
        fence: u64,
    },
    Forced {
        fence: u64,
    },
    Deleted,
    IdleExpired,
}

/// An event and the session's version once it happened.
#[derive(Debug, Clone)]
pub struct Watched {
    pub version: u64,
    pub event: Event,
}

/// The caps on watchers (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchLimits {
    pub watchers: usize,
    pub per_namespace: usize,
}

/// A watcher's stream of events: ends after an `Err` (lagged, store
/// unavailable).
pub struct Events {
    rx: mpsc::Receiver<Result<Watched>>,
    /// Set by the follower when it drops this watcher for lagging: the
    /// events still buffered are dropped with it, not sent.
    lagged: Arc<AtomicBool>,
}

impl Events {
    /// The next event; `None` once the follower has gone.
    pub async fn next(&mut self) -> Option<Result<Watched>> {
        if self.lagged.load(Relaxed) {
            self.rx.close();
            while self.rx.try_recv().is_ok() {}
            return Some(Err(Error::WatchLagged));
        }
        self.rx.recv().await
    }
}

/// This instance's watchers and the followers of their sessions.
pub struct Hub {
    followers: Mutex<HashMap<SessionKey, Follower>>,
    counts: Mutex<HashMap<Arc<str>, usize>>,
    total: AtomicUsize,
    limits: WatchLimits,
    stats: Arc<Stats>,
    /// Set once the server drains: no new watch, and every follower ends
    /// (and lets go of the store).
    closed: AtomicBool,
}

/// How the hub reaches a follower task.
struct Follower {
    joins: mpsc::UnboundedSender<Join>,
    notify: Arc<Notify>,
}

/// A watcher joining a follower.
struct Join {
    after: u64,
    tx: mpsc::Sender<Result<Watched>>,
    lagged: Arc<AtomicBool>,
    counted: Counted,
}

/// One watcher counted in its namespace and in all, until dropped.
struct Counted {
    hub: Arc<Hub>,
    namespace: Arc<str>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut counts = self.hub.counts.lock();
        if let Some(n) = counts.get_mut(&self.namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.namespace);
            }
        }
        self.hub.total.fetch_sub(1, Relaxed);
        self.hub.stats.watchers.fetch_sub(1, Relaxed);
    }
}

impl Hub {
    pub fn new(limits: WatchLimits, stats: Arc<Stats>) -> Hub {
        Hub {
            followers: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            limits,
            stats,
            closed: AtomicBool::new(false),
        }
    }

    /// The server drains: new watches are refused, and every follower ends
    /// now (its watchers' streams end with SHUTTING_DOWN at the edge).
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
        self.wake_all();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Watchers on this instance now.
    pub fn watchers(&self) -> usize {
        self.total.load(Relaxed)
    }

    /// Starts watching `key` (after `after`: a resume, 0: a snapshot). Refused
    /// at once beyond the caps.
    pub fn watch(
        self: &Arc<Self>,
        store: &Arc<Store>,
        key: &SessionKey,
        after: u64,
    ) -> Result<Events> {
        if self.is_closed() {
            return Err(Error::ShuttingDown);
        }
        let counted = self.count(&key.namespace)?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let lagged = Arc::new(AtomicBool::new(false));
        let events = Events {
            rx,
            lagged: lagged.clone(),
        };
        let mut join = Join {
            after,
            tx,
            lagged,
            counted,
        };
        let mut followers = self.followers.lock();
        if let Some(f) = followers.get(key) {
            match f.joins.send(join) {
                Ok(()) => return Ok(events),
                // The follower just ended: start another.
                Err(mpsc::error::SendError(j)) => join = j,
            }
        }
        let (joins, joined) = mpsc::unbounded_channel();
        let notify = Arc::new(Notify::new());
        let _ = joins.send(join);
        followers.insert(
            key.clone(),
            Follower {
                joins,
                notify: notify.clone(),
            },
        );
        drop(followers);
        tokio::spawn(follow::run(
            self.clone(),
            store.clone(),
            key.clone(),
            joined,
            notify,
        ));
        Ok(events)
    }

    /// Wakes the follower of `key`, if this instance has one (a write of it
    /// was announced).
    pub fn wake(&self, key: &SessionKey) {
        if let Some(f) = self.followers.lock().get(key) {
            f.notify.notify_one();
        }
    }

    /// Wakes every follower (the invalidation feed is back: wake-ups may
    /// have been lost).
    pub fn wake_all(&self) {
        for f in self.followers.lock().values() {
            f.notify.notify_one();
        }
    }

    /// A follower with no watcher left ends, unless a watcher joined meanwhile.
    fn end(&self, key: &SessionKey, joins: &mut mpsc::UnboundedReceiver<Join>) -> bool {
        let mut followers = self.followers.lock();
        if !joins.is_empty() {
            return false;
        }
        joins.close();
        followers.remove(key);
        true
    }

    /// A follower ends whatever joins are pending (the drain).
    fn forget(&self, key: &SessionKey, joins: &mut mpsc::UnboundedReceiver<Join>) {
        let mut followers = self.followers.lock();
        joins.close();
        followers.remove(key);
    }

    fn count(self: &Arc<Self>, namespace: &Arc<str>) -> Result<Counted> {
        let mut counts = self.counts.lock();
        let mine = counts.get(namespace).copied().unwrap_or(0);
        if self.limits.per_namespace > 0 && mine >= self.limits.per_namespace {
            return Err(Error::ShareExceeded {
                limit: "max_watchers_per_namespace",
            });
        }
        if self.limits.watchers > 0 && self.total.load(Relaxed) >= self.limits.watchers {
            return Err(Error::ShareExceeded {
                limit: "max_watchers",
            });
        }
        counts.insert(namespace.clone(), mine + 1);
        self.total.fetch_add(1, Relaxed);
        self.stats.watchers.fetch_add(1, Relaxed);
        Ok(Counted {
            hub: self.clone(),
            namespace: namespace.clone(),
        })
    }
}
