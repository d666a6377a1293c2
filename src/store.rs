//! One storage abstraction, two backends.
//!
//! [`Store`] is an enum rather than a trait object: two backends, no boxing of
//! futures, and every operation visible in one place. Both backends give the
//! same semantics and pass the same conformance suite (`tests/it/conformance.rs`);
//! a difference a client could observe is a bug.
//!
//! Every operation is one atomic step in the store: a lock check, a version
//! check, the write, the version bump and an optional release happen together
//! or not at all.

pub mod embedded;
pub mod feed;
pub mod redis;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::Either;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;

use crate::config::StoreSettings;
use crate::error::Result;
use crate::session::{
    Admitted, Cursor, Guards, Inspection, Limits, LockGrant, LockRequest, Mutation, Page,
    RateLimit, RateScope, Session, SessionKey, Written,
};
use crate::stats::Stats;
use crate::telemetry::{self, otlp};
use crate::watch::{Begin, Entry, Pos};
use tokio::sync::Notify;

pub enum Store {
    Embedded(embedded::EmbeddedStore),
    Redis(redis::RedisStore),
}

/// Calls the same method on whichever backend this is; while traces are
/// exported, in a `store` span named after the Redis script (or command) or
/// the embedded store's step that runs.
macro_rules! dispatch {
    ($self:ident.$method:ident($($arg:expr),*), $redis:literal, $redb:literal) => {
        match $self {
            Store::Embedded(s) => traced(concat!("redb ", $redb), "redb", s.$method($($arg),*)).await,
            Store::Redis(s) => traced(concat!("redis ", $redis), "redis", s.$method($($arg),*)).await,
        }
    };
}

/// `step` in a span of its own while traces are exported; as it is
/// otherwise (no span made, nothing entered on its polls).
fn traced<F: Future>(
    name: &'static str,
    system: &'static str,
    step: F,
) -> Either<Instrumented<F>, F> {
    if telemetry::exporting() {
        Either::Left(step.instrument(otlp::store_span(name, system)))
    } else {
        Either::Right(step)
    }
}

/// What a shared store tells an instance about other instances' writes.
#[derive(Debug)]
pub enum FeedEvent {
    /// The session now has a version of at least this (after a delete: any
    /// re-created one will).
    Invalidate(SessionKey, u64),
    /// The feed broke: invalidations may be lost from now on.
    Down,
    /// The feed is (back) up.
    Up,
    /// A feed per shard (Redis Cluster): the subscription of the shard that
    /// owns these slots (inclusive ranges) went down (`up` false: its
    /// invalidations may be lost from now on) or is (back) up. Whole-feed
    /// `Down` and `Up` still come, for the queue's own losses.
    Slots { up: bool, ranges: Vec<(u16, u16)> },
}

/// How a store's invalidation feed covers its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// No feed: nobody else writes (the embedded store).
    Alone,
    /// One feed for all sessions.
    Whole,
    /// A feed per shard, told by slot (`FeedEvent::Slots`; see `slot_of`).
    Slots,
}

/// The Redis Cluster slot of a session's keys, for `Coverage::Slots`.
pub fn slot_of(key: &SessionKey) -> u16 {
    redis::slot_of(key)
}

pub use feed::{Feed, FeedSender};

impl Store {
    /// Opens the configured store. A shared store (Redis) also returns its
    /// invalidation feed.
    pub async fn open(
        settings: &StoreSettings,
        limits: Limits,
        stats: Arc<Stats>,
    ) -> Result<(Store, Option<Feed>)> {
        Ok(match settings {
            StoreSettings::Redis(redis) => {
                let (tx, rx) = feed::channel(feed::FEED_QUEUE);
                let store = redis::RedisStore::open(redis, limits, stats, tx).await?;
                (Store::Redis(store), Some(rx))
            }
            StoreSettings::Embedded { path, sweep_every } => {
                let options = embedded::Options {
                    sweep_every: *sweep_every,
                };
                let store = embedded::EmbeddedStore::open_with(path, options, limits, stats)?;
                (Store::Embedded(store), None)
            }
        })
    }

    /// How this store's feed covers its sessions.
    pub fn coverage(&self) -> Coverage {
        match self {
            Store::Embedded(_) => Coverage::Alone,
            Store::Redis(r) if r.sharded() => Coverage::Slots,
            Store::Redis(_) => Coverage::Whole,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Embedded(_) => "embedded",
            Store::Redis(_) => "redis",
        }
    }

    /// The session, or `None` if it does not exist or expired.
    pub async fn get(&self, key: &SessionKey) -> Result<Option<Session>> {
        dispatch!(self.get(key), "HGETALL", "read")
    }

    /// Takes the lock, waiting up to `req.wait` in the queue (zero: try
    /// once), as `req.turn` says.
    pub async fn lock(&self, key: &SessionKey, req: LockRequest) -> Result<LockGrant> {
        dispatch!(self.lock(key, req), "lock.lua", "lock")
    }

    pub async fn update(&self, key: &SessionKey, m: Mutation, g: Guards) -> Result<Written> {
        dispatch!(self.update(key, m, g), "update.lua", "update")
    }

    /// The version the deleted session had; `None` when there was nothing to
    /// delete.
    pub async fn delete(&self, key: &SessionKey, g: Guards) -> Result<Option<u64>> {
        dispatch!(self.delete(key, g), "delete.lua", "delete")
    }

    pub async fn unlock(&self, key: &SessionKey, token: &str) -> Result<()> {
        dispatch!(self.unlock(key, token), "unlock.lua", "unlock")
    }

    /// Returns the new lease expiry (ms since the epoch).
    pub async fn refresh(&self, key: &SessionKey, token: &str, lease: Duration) -> Result<i64> {
        dispatch!(self.refresh(key, token, lease), "refresh.lua", "refresh")
    }

    /// One step of a rate limit (GCRA): admitted, or RATE_LIMITED with when
    /// to come back.
    pub async fn check_rate(&self, scope: &RateScope, limit: &RateLimit) -> Result<Admitted> {
        dispatch!(self.check_rate(scope, limit), "rate.lua", "rate")
    }

    /// The session and its lock, as operators see them.
    pub async fn inspect(&self, key: &SessionKey) -> Result<Inspection> {
        dispatch!(self.inspect(key), "inspect.lua", "inspect")
    }

    /// Frees the lock whoever holds it and bumps the fencing token; the
    /// released holder's fencing token, `None` when nobody held it.
    pub async fn force_unlock(&self, key: &SessionKey) -> Result<Option<u64>> {
        dispatch!(self.force_unlock(key), "force_unlock.lua", "force unlock")
    }

    /// A page of the ids of live sessions under `prefix` in `namespace`.
    pub async fn list(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: &Cursor,
        size: usize,
    ) -> Result<Page> {
        dispatch!(self.list(namespace, prefix, cursor, size), "SCAN", "list")
    }

    /// Starts (or keeps) logging `key`'s steps for watchers: its snapshot,
    /// lock and recent log, at one position (see `crate::watch`). `notify`
    /// is woken when the embedded store logs a step (Redis wakes followers
    /// through the invalidation feed).
    pub async fn watch_begin(&self, key: &SessionKey, notify: &Arc<Notify>) -> Result<Begin> {
        dispatch!(
            self.watch_begin(key, notify),
            "watch_begin.lua",
            "watch begin"
        )
    }

    /// The entries of `key`'s log after `after`; `None` when some are no
    /// longer kept (the watchers need a fresh snapshot).
    pub async fn watch_read(&self, key: &SessionKey, after: Pos) -> Result<Option<Vec<Entry>>> {
        dispatch!(self.watch_read(key, after), "watch_read.lua", "watch read")
    }

    /// Keeps logging `key`'s steps for a while more (see `watch::LINGER`).
    pub async fn watch_keep(&self, key: &SessionKey) -> Result<()> {
        match self {
            Store::Embedded(s) => s.watch_keep(key).await,
            Store::Redis(s) => s.watch_keep(key).await,
        }
    }

    /// The id of this instance when the store names it (Redis: it begins
    /// the lock tokens this instance grants).
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            Store::Embedded(_) => None,
            Store::Redis(s) => Some(s.instance_id()),
        }
    }

    /// Fails when the store cannot be reached.
    pub async fn ping(&self) -> Result<()> {
        // Not traced: the readiness task pings, not a call.
        match self {
            Store::Embedded(s) => s.ping().await,
            Store::Redis(s) => s.ping().await,
        }
    }

    /// (connections, idle connections) of the Redis pool; zeros when embedded.
    pub fn pool_status(&self) -> (u64, u64) {
        match self {
            Store::Embedded(_) => (0, 0),
            Store::Redis(s) => s.pool_status(),
        }
    }
}

/// A fresh, unguessable lock token.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Microseconds since the Unix epoch on this host's clock.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Milliseconds since the Unix epoch on this host's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
