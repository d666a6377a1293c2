//! The connections calls share, and the one way a call runs a command or a
//! script on them: within the Redis timeout, with its outcome counted in the
//! store's health, a script followed by the durability wait when
//! `--redis-durability` asks for one, and its reply parsed by `wire` into its
//! outcome.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use deadpool_redis::Pool;
use parking_lot::Mutex;
use redis::Value;
use redis::aio::MultiplexedConnection;

use super::Inner;
use super::durability::Durable;
use super::fault::Fault;
use super::wire::Reply;

/// The connections calls share. A multiplexed connection pipelines every
/// command in flight on it, so calls need no connection of their own, and
/// checking one out of the pool per call would cost a round trip
/// (deadpool-redis PINGs every connection it hands out): each slot keeps a
/// pooled connection checked out, and calls take the slots in turn. The pool
/// opens and checks connections; it is asked again only for a slot whose
/// connection failed or timed out.
pub(super) struct Conns {
    pub(super) pool: Pool,
    /// Never empty (see `new`).
    slots: Box<[Slot]>,
    next: AtomicUsize,
    /// Told each time a slot opens a connection: Redis may have restarted
    /// or failed over, so its durability settings are read again.
    pub(super) opened: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Slot {
    conn: Mutex<Option<deadpool_redis::Connection>>,
    /// Held by the one call that opens the slot's connection; the others
    /// wait for it rather than ask the pool, which has no more connections
    /// than slots.
    opening: tokio::sync::Mutex<()>,
}

impl Slot {
    fn get(&self) -> Option<MultiplexedConnection> {
        self.conn.lock().as_deref().cloned()
    }

    /// Empties the slot; its connection leaves the pool for good rather than
    /// being recycled.
    fn close(&self) {
        if let Some(pooled) = self.conn.lock().take() {
            drop(deadpool_redis::Connection::take(pooled));
        }
    }
}

impl Conns {
    /// `n` slots; at least one (the configuration refuses a pool of 0).
    pub(super) fn new(pool: Pool, n: usize) -> Conns {
        Conns {
            pool,
            slots: (0..n.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            opened: Arc::default(),
        }
    }

    /// Runs `command` on the next slot's connection within `timeout`. A
    /// failure of the connection itself (not an error reply) or a timeout
    /// empties the slot and closes its connection, so that the next call
    /// through the slot gets a fresh one.
    async fn run<T, F>(
        &self,
        timeout: Duration,
        command: impl FnOnce(MultiplexedConnection) -> F,
    ) -> Result<T, Fault>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let i = self.next.fetch_add(1, Relaxed) % self.slots.len();
        #[allow(clippy::indexing_slicing)]
        // reason: `i` is a remainder of the length, and `new` makes the length at least 1
        let slot = &self.slots[i];
        let result = tokio::time::timeout(timeout, async {
            let conn = self.connection(slot).await?;
            command(conn).await.map_err(|e| {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    slot.close();
                }
                Fault::Redis(e)
            })
        })
        .await;
        match result {
            Ok(result) => result,
            Err(_elapsed) => {
                slot.close();
                Err(Fault::Timeout(timeout))
            }
        }
    }

    async fn connection(&self, slot: &Slot) -> Result<MultiplexedConnection, Fault> {
        if let Some(conn) = slot.get() {
            return Ok(conn);
        }
        let _opening = slot.opening.lock().await;
        if let Some(conn) = slot.get() {
            return Ok(conn);
        }
        let pooled = self.pool.get().await?;
        let conn = MultiplexedConnection::clone(&pooled);
        *slot.conn.lock() = Some(pooled);
        self.opened.notify_waiters();
        Ok(conn)
    }
}

impl Inner {
    /// Runs a plain command on a shared connection (see `Conns`).
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, Fault> {
        let result = self
            .conns
            .run(self.timeout, |mut c| async move {
                cmd.query_async::<T>(&mut c).await
            })
            .await;
        self.settle(result)
    }

    /// Runs a command that is not a call (the durability checks): an error
    /// reply to it (CONFIG denied by an ACL, a command renamed) says nothing
    /// of the store's health, so its outcome is not counted.
    pub(super) async fn ask<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Fault> {
        self.conns
            .run(self.timeout, |mut c| async move {
                cmd.query_async::<T>(&mut c).await
            })
            .await
    }

    /// Runs a script on a shared connection and reads its reply with `parse`
    /// (one of `wire`'s parsers); counts a lease found expired. Under
    /// `--redis-durability` the wait follows the script in the same write,
    /// and an answer not confirmed durable is a fault whatever the script
    /// said: a grant or a write that may yet be lost is not acknowledged.
    pub(super) async fn invoke<T>(
        &self,
        inv: &mut redis::ScriptInvocation<'_>,
        parse: fn(&Value) -> Result<Reply<T>, Fault>,
    ) -> Result<T, Fault> {
        let wait = self.durability.wait.as_ref();
        let result = self
            .conns
            .run(self.timeout, |mut c| async move {
                let Some(wait) = wait else {
                    return inv.invoke_async::<Value>(&mut c).await.map(|v| (v, Ok(())));
                };
                let mut durable = Durable::new(c, wait);
                let value = inv.invoke_async::<Value>(&mut durable).await?;
                Ok((value, wait.judge(durable.answer())))
            })
            .await;
        let (value, durable) = self.settle(result)?;
        if let Err(why) = durable {
            self.stats.durability_failures.fetch_add(1, Relaxed);
            self.stats.store_failed();
            return Err(Fault::NotDurable(why));
        }
        let reply = parse(&value)?;
        if reply.expired {
            self.stats.lock_lease_expiries.fetch_add(1, Relaxed);
        }
        Ok(reply.outcome)
    }

    /// Counts the outcome of a Redis call in the store's health. A reply
    /// that does not parse is not counted against it: Redis answered.
    fn settle<T>(&self, result: Result<T, Fault>) -> Result<T, Fault> {
        match &result {
            Ok(_) => self.stats.store_ok(),
            Err(_) => self.stats.store_failed(),
        }
        result
    }
}
