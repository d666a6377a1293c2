//! WatchSession on Redis: the scripts log a watched session's steps in a
//! capped stream in its slot (see `watch.lua`), a follower reads it after
//! its position (`watch_read.lua`) when the invalidation feed announces the
//! session, and every heartbeat (pub/sub is at most once). The marker that
//! makes the scripts log lasts `LINGER` unless a follower keeps it, and the
//! stream a while longer; both are keys of the session's hash tag, so
//! every script still touches one Cluster slot.

use std::sync::Arc;

use tokio::sync::Notify;

use super::RedisStore;
use super::keys::Keys;
use super::library::Function;
use super::wire;
use crate::error::Result;
use crate::session::SessionKey;
use crate::watch::{Begin, Entry, LINGER, Pos, READ_BATCH};

/// How long the stream outlives its last keep (the marker: `LINGER`).
const STREAM_MS: u64 = 60_000;

/// The stream and the marker of a session (its sixth and seventh keys).
fn watch_keys(keys: &Keys) -> (&str, &str) {
    let [.., marker, stream] = &keys.keys;
    (stream, marker)
}

impl RedisStore {
    /// Marks `key` watched and answers its snapshot, lock and log in one
    /// step (watch_begin.lua). The feed wakes followers on Redis, not
    /// `notify`.
    pub async fn watch_begin(&self, key: &SessionKey, _notify: &Arc<Notify>) -> Result<Begin> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let (stream, marker) = watch_keys(&keys);
        let mut inv = inner.library.call(Function::WatchBegin);
        for k in keys.keys.iter().take(3) {
            inv.key(k);
        }
        inv.key(stream).key(marker);
        inv.arg(LINGER.as_millis() as u64)
            .arg(STREAM_MS)
            .arg(inner.channels.invalidate(keys.slot));
        let value: redis::Value = inner.eval(&inv).await?;
        Ok(wire::watch_begin(&value)?.outcome)
    }

    /// The entries of `key`'s log after `after`; `None` when some are gone.
    pub async fn watch_read(&self, key: &SessionKey, after: Pos) -> Result<Option<Vec<Entry>>> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let (stream, marker) = watch_keys(&keys);
        let mut inv = inner.library.call(Function::WatchRead);
        inv.key(stream).key(marker);
        inv.arg(format!("{}-{}", after.0, after.1))
            .arg(LINGER.as_millis() as u64)
            .arg(STREAM_MS)
            .arg(READ_BATCH)
            .arg(inner.channels.invalidate(keys.slot));
        let value: redis::Value = inner.eval(&inv).await?;
        Ok(wire::watch_read(&value)?.outcome)
    }

    /// Nothing to do: the follower's every read (watch_read.lua) keeps the
    /// marker and the stream, and it reads every heartbeat.
    pub async fn watch_keep(&self, _key: &SessionKey) -> Result<()> {
        Ok(())
    }
}
