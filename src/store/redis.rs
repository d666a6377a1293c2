//! The Redis store: any number of sessiond instances on one Redis.
//!
//! Each operation is one Lua script (`redis/*.lua`, each prefixed with
//! `redis/prelude.lua`): one atomic step and one round trip. Reads are a plain
//! `HGETALL`. All keys of a session share the hash tag `{<ns>/<id>}`, with
//! namespace and id percent-encoded so that the tag holds only
//! `[A-Za-z0-9._~%/-]`: no id, however crafted, can close the tag early or
//! reach another id's keys, and a session's keys stay in one Cluster slot.
//!
//! Leases use the Redis server's clock alone (`TIME`, `PEXPIRE`), so clock
//! skew between sessiond hosts cannot make two holders.
//!
//! FIFO waiting across instances: a waiter queues its token in the session's
//! queue list and waits for a wake-up published on its instance's channel by
//! whichever script releases the lock; woken, it runs the lock script again
//! and takes the lock. Every `HEARTBEAT` it also retries, which renews its
//! place (a waiter not renewed for `WAITER_ALIVE` is dropped from the queue,
//! so a dead instance stalls a queue by at most about `WAITER_ALIVE +
//! HEARTBEAT`) and covers wake-ups lost while the subscription was down.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use redis::aio::MultiplexedConnection;
use redis::{Script, Value};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

mod feed;
pub mod wire;

use super::{FeedEvent, new_token};
use crate::config::RedisSettings;
use crate::error::{Error, Result};
use crate::session::{Guards, Limits, LockGrant, Mutation, Session, SessionKey, Written};
use crate::stats::Stats;
use wire::{Reply, encode_into, parse_session};

/// How often a queued waiter retries and renews its place in the queue.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a queued waiter stays in the queue without renewing it.
pub const WAITER_ALIVE: Duration = Duration::from_millis(2000);

const PRELUDE: &str = include_str!("redis/prelude.lua");

struct Scripts {
    update: Script,
    delete: Script,
    lock: Script,
    abandon: Script,
    unlock: Script,
    refresh: Script,
}

impl Scripts {
    fn load() -> Scripts {
        let s = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            update: s(include_str!("redis/update.lua")),
            delete: s(include_str!("redis/delete.lua")),
            lock: s(include_str!("redis/lock.lua")),
            abandon: s(include_str!("redis/abandon.lua")),
            unlock: s(include_str!("redis/unlock.lua")),
            refresh: s(include_str!("redis/refresh.lua")),
        }
    }
}

pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Conns,
    scripts: Scripts,
    prefix: String,
    limits: Limits,
    stats: Arc<Stats>,
    timeout: Duration,
    /// This instance's wake-up channel, named in its waiters' queue entries.
    wake_channel: String,
    /// Where write scripts announce new versions (for other instances' caches).
    invalidation_channel: String,
    /// Waiters queued through this instance, by token.
    waiters: Mutex<HashMap<String, Arc<Waiter>>>,
}

/// A caller queued for a lock through this instance.
#[derive(Default)]
struct Waiter {
    notify: Notify,
    /// The lock, when a releasing script on this instance handed it over.
    handed: Mutex<Option<LockGrant>>,
}

/// The five keys of one session, in the order the scripts expect, and the
/// invalidation subject (the encoded `ns/id`).
#[derive(Clone)]
struct Keys {
    keys: [String; 5],
    subject: String,
}

impl RedisStore {
    pub async fn open(
        config: &RedisSettings,
        limits: Limits,
        stats: Arc<Stats>,
        feed: UnboundedSender<FeedEvent>,
    ) -> Result<RedisStore> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())
            .map_err(|e| Error::StoreUnavailable(format!("bad Redis URL: {e}")))?;
        if let Some(password) = &config.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let mut pool_config = PoolConfig::new(config.pool_size);
        pool_config.timeouts = Timeouts {
            wait: Some(config.timeout),
            create: Some(config.timeout),
            recycle: Some(config.timeout),
        };
        let cfg = deadpool_redis::Config {
            url: None,
            connection: Some(info.clone().into()),
            pool: Some(pool_config),
        };
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| Error::StoreUnavailable(format!("cannot create the Redis pool: {e}")))?;
        let prefix = config.key_prefix.clone();
        let instance = new_token();
        let inner = Arc::new(Inner {
            conns: Conns::new(pool, config.pool_size),
            scripts: Scripts::load(),
            wake_channel: format!("{prefix}:wake:{instance}"),
            invalidation_channel: format!("{prefix}:invalidate"),
            prefix,
            limits,
            stats,
            timeout: config.timeout,
            waiters: Mutex::new(HashMap::new()),
        });
        let client = redis::Client::open(info)
            .map_err(|e| Error::StoreUnavailable(format!("bad Redis settings: {e}")))?;
        tokio::spawn(feed::subscribe(client, Arc::downgrade(&inner), feed));
        tokio::spawn(feed::heartbeat(Arc::downgrade(&inner)));
        let store = RedisStore { inner };
        if let Err(e) = store.ping().await {
            tracing::warn!(error = %e, "Redis is not reachable yet; calls fail with UNAVAILABLE until it is");
        }
        Ok(store)
    }

    pub async fn get(&self, key: &SessionKey) -> Result<Option<Session>> {
        let keys = self.inner.keys(key);
        let items: Vec<Value> = self
            .inner
            .query(redis::cmd("HGETALL").arg(&keys.keys[0]))
            .await?;
        parse_session(&items)
    }

    pub async fn lock(
        &self,
        key: &SessionKey,
        lease: Duration,
        wait: Duration,
    ) -> Result<LockGrant> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let token = new_token();
        if wait.is_zero() {
            return match inner.try_lock(&keys, &token, lease, false).await? {
                Attempt::Granted(g) => Ok(g),
                Attempt::Queued(_) | Attempt::Held => {
                    inner.stats.lock_contended.fetch_add(1, Relaxed);
                    Err(Error::LockHeld)
                }
            };
        }
        let deadline = Instant::now() + wait;
        let waiter = Arc::new(Waiter::default());
        inner
            .waiters
            .lock()
            .expect("waiters")
            .insert(token.clone(), waiter.clone());
        let mut guard = Abandon {
            inner: inner.clone(),
            keys: Some(keys),
            token: token.clone(),
            counted: false,
        };
        let keys = guard.keys.as_ref().expect("set above");
        let started = Instant::now();
        let mut queued = false;
        loop {
            let handed = waiter.handed.lock().expect("handed").take();
            let attempt = match handed {
                Some(g) => {
                    inner.stats.lock_acquisitions.fetch_add(1, Relaxed);
                    Attempt::Granted(g)
                }
                None => inner.try_lock(keys, &token, lease, true).await?,
            };
            match attempt {
                Attempt::Granted(g) => {
                    guard.disarm();
                    if queued {
                        inner.stats.lock_waits_granted.fetch_add(1, Relaxed);
                        inner
                            .stats
                            .lock_wait_ms
                            .record(started.elapsed().as_millis() as u64);
                    }
                    return Ok(g);
                }
                Attempt::Held => unreachable!("a waiting attempt queues instead of refusing"),
                Attempt::Queued(free_in) => {
                    if !queued {
                        queued = true;
                        inner.stats.lock_contended.fetch_add(1, Relaxed);
                        inner.stats.lock_waiting_now.fetch_add(1, Relaxed);
                        guard.counted = true;
                    }
                    // Retry when woken, when the holder's lease runs out, or
                    // at the heartbeat, whichever comes first.
                    let retry = free_in.map_or(HEARTBEAT, |d| d.min(HEARTBEAT));
                    tokio::select! {
                        _ = waiter.notify.notified() => {}
                        _ = tokio::time::sleep(retry) => {}
                        _ = tokio::time::sleep_until(deadline) => {
                            return Err(Error::LockWaitTimeout { waited_ms: wait.as_millis() as u64 });
                        }
                    }
                }
            }
        }
    }

    pub async fn update(&self, key: &SessionKey, m: Mutation, g: Guards) -> Result<Written> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let l = &inner.limits;
        let mut inv = inner.scripts.update.prepare_invoke();
        keys.add_to(&mut inv);
        add_guards(&mut inv, &g);
        inv.arg(flag(m.replace))
            .arg(l.idle_ttl.as_millis() as u64)
            .arg(l.max_fields)
            .arg(l.max_session_bytes)
            .arg(&inner.invalidation_channel)
            .arg(&keys.subject)
            .arg(&inner.wake_channel)
            .arg(m.set.len());
        for (name, value) in &m.set {
            inv.arg(name.as_bytes()).arg(value.as_ref());
        }
        for name in &m.delete {
            inv.arg(name.as_bytes());
        }
        let reply = inner.invoke(&mut inv).await?;
        inner.after_release(&reply, &keys);
        match reply.status.as_str() {
            "OK" => Ok(Written {
                version: reply.a as u64,
                expires_ms: reply.b,
            }),
            // {'LIMIT_EXCEEDED', limit name, value the write would reach, expired}
            "LIMIT_EXCEEDED" => Err(match reply.raw_a.as_slice() {
                b"max_fields" => l.too_many_fields(reply.b as usize),
                _ => l.too_large(reply.b as u64),
            }),
            _ => Err(reply.refusal(&g)),
        }
    }

    pub async fn delete(&self, key: &SessionKey, g: Guards) -> Result<Option<u64>> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let mut inv = inner.scripts.delete.prepare_invoke();
        keys.add_to(&mut inv);
        add_guards(&mut inv, &g);
        inv.arg(&inner.invalidation_channel)
            .arg(&keys.subject)
            .arg(&inner.wake_channel);
        let reply = inner.invoke(&mut inv).await?;
        inner.after_release(&reply, &keys);
        match reply.status.as_str() {
            "OK" => Ok((reply.a > 0).then_some(reply.a as u64)),
            _ => Err(reply.refusal(&g)),
        }
    }

    pub async fn unlock(&self, key: &SessionKey, token: &str) -> Result<()> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let mut inv = inner.scripts.unlock.prepare_invoke();
        keys.add_to(&mut inv);
        inv.arg(token).arg(&inner.wake_channel);
        let reply = inner.invoke(&mut inv).await?;
        inner.after_release(&reply, &keys);
        match reply.status.as_str() {
            "OK" => Ok(()),
            _ => Err(reply.refusal(&Guards::default())),
        }
    }

    pub async fn refresh(&self, key: &SessionKey, token: &str, lease: Duration) -> Result<i64> {
        let inner = &self.inner;
        let mut inv = inner.scripts.refresh.prepare_invoke();
        inner.keys(key).add_to(&mut inv);
        inv.arg(token).arg(lease.as_millis() as u64);
        let reply = inner.invoke(&mut inv).await?;
        match reply.status.as_str() {
            "OK" => Ok(reply.a),
            _ => Err(reply.refusal(&Guards::default())),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        let _: String = self.inner.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    pub fn pool_status(&self) -> (u64, u64) {
        let s = self.inner.conns.pool.status();
        (s.size as u64, s.available as u64)
    }
}

/// The connections calls share. A multiplexed connection pipelines every
/// command in flight on it, so calls need no connection of their own, and
/// checking one out of the pool per call would cost a round trip
/// (deadpool-redis PINGs every connection it hands out): each slot keeps a
/// pooled connection checked out, and calls take the slots in turn. The pool
/// opens and checks connections; it is asked again only for a slot whose
/// connection failed or timed out.
struct Conns {
    pool: Pool,
    slots: Box<[Slot]>,
    next: AtomicUsize,
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
        let conn = self.conn.lock().expect("slot");
        conn.as_deref().cloned()
    }
}

impl Conns {
    fn new(pool: Pool, n: usize) -> Conns {
        Conns {
            pool,
            slots: (0..n).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
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
    ) -> std::result::Result<std::result::Result<T, String>, tokio::time::error::Elapsed>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let slot = &self.slots[self.next.fetch_add(1, Relaxed) % self.slots.len()];
        let result = tokio::time::timeout(timeout, async {
            let conn = self.connection(slot).await?;
            command(conn).await.map_err(|e| {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    close(slot);
                }
                e.to_string()
            })
        })
        .await;
        if result.is_err() {
            close(slot);
        }
        result
    }

    async fn connection(&self, slot: &Slot) -> std::result::Result<MultiplexedConnection, String> {
        if let Some(conn) = slot.get() {
            return Ok(conn);
        }
        let _opening = slot.opening.lock().await;
        if let Some(conn) = slot.get() {
            return Ok(conn);
        }
        let pooled = self.pool.get().await.map_err(|e| e.to_string())?;
        let conn = MultiplexedConnection::clone(&pooled);
        *slot.conn.lock().expect("slot") = Some(pooled);
        Ok(conn)
    }
}

/// Empties a slot; its connection leaves the pool for good rather than being
/// recycled.
fn close(slot: &Slot) {
    if let Some(pooled) = slot.conn.lock().expect("slot").take() {
        drop(deadpool_redis::Connection::take(pooled));
    }
}

enum Attempt {
    Granted(LockGrant),
    Held,
    /// Queued; the holder's lease runs out in this long (`None`: unknown or
    /// free already).
    Queued(Option<Duration>),
}

impl Inner {
    fn keys(&self, key: &SessionKey) -> Keys {
        let mut subject = String::with_capacity(key.namespace.len() + key.id.len() + 8);
        encode_into(&mut subject, &key.namespace);
        subject.push('/');
        encode_into(&mut subject, &key.id);
        // `<prefix>:{<subject>}:<suffix>`, without the formatting machinery:
        // this runs on every call.
        let k = |suffix: char| {
            let mut k = String::with_capacity(self.prefix.len() + subject.len() + 5);
            k.push_str(&self.prefix);
            k.push_str(":{");
            k.push_str(&subject);
            k.push_str("}:");
            k.push(suffix);
            k
        };
        Keys {
            keys: [k('d'), k('m'), k('l'), k('q'), k('w')],
            subject,
        }
    }

    async fn try_lock(
        &self,
        keys: &Keys,
        token: &str,
        lease: Duration,
        queue: bool,
    ) -> Result<Attempt> {
        let mut inv = self.scripts.lock.prepare_invoke();
        keys.add_to(&mut inv);
        inv.arg(token)
            .arg(lease.as_millis() as u64)
            .arg(if queue { "wait" } else { "try" })
            .arg(WAITER_ALIVE.as_millis() as u64)
            .arg(&self.wake_channel);
        let reply = self.invoke(&mut inv).await?;
        match reply.status.as_str() {
            "GRANTED" => {
                self.stats.lock_acquisitions.fetch_add(1, Relaxed);
                Ok(Attempt::Granted(LockGrant {
                    token: token.to_owned(),
                    fence: reply.a as u64,
                    lease_expires_ms: reply.b,
                    session: parse_session(&reply.rest)?,
                }))
            }
            "QUEUED" => Ok(Attempt::Queued(
                (reply.a > 0).then(|| Duration::from_millis(reply.a as u64 + 1)),
            )),
            "LOCK_HELD" => Ok(Attempt::Held),
            other => Err(Error::Internal(format!("lock script answered {other}"))),
        }
    }

    /// Runs a plain command on a shared connection (see `Conns`).
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let result = self
            .conns
            .run(self.timeout, |mut c| async move {
                cmd.query_async::<T>(&mut c).await
            })
            .await;
        self.settle(result)
    }

    /// Runs a script on a shared connection and parses its reply.
    async fn invoke(&self, inv: &mut redis::ScriptInvocation<'_>) -> Result<Reply> {
        let result = self
            .conns
            .run(self.timeout, |mut c| async move {
                inv.invoke_async::<Vec<Value>>(&mut c).await
            })
            .await;
        let reply = Reply::parse(self.settle(result)?)?;
        if reply.expired {
            self.stats.lock_lease_expiries.fetch_add(1, Relaxed);
        }
        Ok(reply)
    }

    /// Acts on what a releasing script did with the lock. Handed to a waiter
    /// of this instance: give it the grant. If that waiter has just gone
    /// (its call ended meanwhile), release the lock again. Woken a waiter:
    /// when it is one of ours, wake it now rather than after the pub/sub hop.
    fn after_release(self: &Arc<Self>, reply: &Reply, keys: &Keys) {
        if reply.status != "OK" {
            return;
        }
        let Some(Value::Array(items)) = reply.rest.first() else {
            return;
        };
        let Some(Value::BulkString(token)) = items.first() else {
            return;
        };
        let token = String::from_utf8_lossy(token).into_owned();
        let waiter = self.waiters.lock().expect("waiters").get(&token).cloned();
        if items.len() >= 3 {
            let grant = match parse_session(&items[3..]) {
                Ok(session) => LockGrant {
                    token: token.clone(),
                    fence: wire::int(&items[1]) as u64,
                    lease_expires_ms: wire::int(&items[2]),
                    session,
                },
                Err(e) => {
                    tracing::error!(error = %e, "unreadable handover");
                    return;
                }
            };
            match waiter {
                Some(w) => {
                    *w.handed.lock().expect("handed") = Some(grant);
                    w.notify.notify_one();
                }
                None => self.abandon(keys.clone(), token),
            }
        } else if let Some(w) = waiter {
            w.notify.notify_one();
        }
    }

    /// Runs the abandon script for `token` in the background: it leaves the
    /// queue, and a lock it holds is released and passed on.
    fn abandon(self: &Arc<Self>, keys: Keys, token: String) {
        let inner = self.clone();
        tokio::spawn(async move {
            let mut inv = inner.scripts.abandon.prepare_invoke();
            keys.add_to(&mut inv);
            inv.arg(&token).arg(&inner.wake_channel);
            match inner.invoke(&mut inv).await {
                Ok(reply) => inner.after_release(&reply, &keys),
                // The queue entry still expires after WAITER_ALIVE, and a
                // granted lock after its lease.
                Err(e) => tracing::warn!(error = %e, "could not leave the lock queue"),
            }
        });
    }

    /// Counts the outcome of a Redis call and turns failures into
    /// STORE_UNAVAILABLE.
    fn settle<T>(
        &self,
        result: std::result::Result<std::result::Result<T, String>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        match result {
            Ok(Ok(v)) => {
                self.stats.store_ok();
                Ok(v)
            }
            Ok(Err(e)) => {
                self.stats.store_failed();
                Err(Error::StoreUnavailable(format!("redis: {e}")))
            }
            Err(_) => {
                self.stats.store_failed();
                Err(Error::StoreUnavailable(format!(
                    "redis did not answer within {:?}",
                    self.timeout
                )))
            }
        }
    }
}

impl Keys {
    fn add_to(&self, inv: &mut redis::ScriptInvocation<'_>) {
        for k in &self.keys {
            inv.key(k);
        }
    }
}

/// Takes a waiter out of the queue when its wait ends without a grant: on
/// timeout, error, or when the caller's future is dropped (deadline passed,
/// client disconnected). Runs the abandon script in the background, which also
/// releases the lock if it was granted to this token meanwhile.
struct Abandon {
    inner: Arc<Inner>,
    keys: Option<Keys>,
    token: String,
    counted: bool,
}

impl Abandon {
    fn disarm(&mut self) {
        self.keys = None;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.inner
            .waiters
            .lock()
            .expect("waiters")
            .remove(&self.token);
        if self.counted {
            self.inner.stats.lock_waiting_now.fetch_sub(1, Relaxed);
        }
        let Some(keys) = self.keys.take() else { return };
        if self.counted {
            self.inner.stats.lock_waits_abandoned.fetch_add(1, Relaxed);
        }
        self.inner.abandon(keys, std::mem::take(&mut self.token));
    }
}

/// ARGV 1-3 of the write scripts: lock token, expected version, release.
fn add_guards(inv: &mut redis::ScriptInvocation<'_>, g: &Guards) {
    inv.arg(g.lock_token.as_deref().unwrap_or(""))
        .arg(
            g.expected_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
        )
        .arg(flag(g.release_lock));
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}
