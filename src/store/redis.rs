//! The Redis store: any number of sessiond instances on one Redis.
//!
//! Each operation is one Lua script (`redis/*.lua`, using the functions of
//! `redis/prelude.lua`), called as a function of the library `library`
//! loads: one atomic step and one round trip. Reads are a plain `HGETALL`.
//! All keys of a session share the hash tag `{<ns>/<id>}`, with
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
//!
//! Here: `RedisStore`'s calls, each building one script's arguments and
//! matching on its typed outcome. Beside it: `library` (the scripts as one
//! Redis Functions library, and a call of one), `conns` (the shared
//! connections, and running a command on them within the timeout), `wire`
//! (key encoding, the data hash, and every script's reply parsed into its
//! outcomes), `waiting` (the FIFO wait and what this instance does with a
//! lock handed over), `feed` (the pub/sub connection), `durability` (the
//! server's persistence settings, and the wait that makes a write durable
//! before it is acknowledged) and `fault` (what can go wrong on the way,
//! and which `Error` each fault becomes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use deadpool_redis::{Manager, Pool, PoolConfig, Runtime, Timeouts};
use redis::{AsyncConnectionConfig, Value};

mod channels;
mod conns;
mod durability;
mod fault;
mod feed;
mod keys;
mod library;
mod loss;
mod operate;
mod shards;
mod slots;
mod target;
mod waiting;
mod watch;
pub mod wire;

use super::{FeedSender, new_token};
use crate::config::{RedisSettings, RedisTarget};
use crate::error::{Error, Result};
use crate::session::{
    Admitted, Guards, Idempotency, Limits, LockGrant, LockRequest, Mutation, RateLimit, RateScope,
    Session, SessionKey, Turn, Written,
};
use crate::stats::Stats;
use channels::Channels;
use conns::{Conns, Opener};
use durability::Policy;
use fault::Fault;
use keys::{Keys, add_guards, add_idempotency_args, add_ops, flag, op_field};
use library::{Function, Library};
use target::Target;
use waiting::Waiters;
use wire::{
    DeleteReply, Limit, LockReply, RefreshReply, Refusal, UnlockReply, WriteReply, parse_session,
};

/// How often a queued waiter retries and renews its place in the queue.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a queued waiter stays in the queue without renewing it.
pub const WAITER_ALIVE: Duration = Duration::from_millis(2000);

/// lock.lua's modes: refuse when the lock is held, or queue.
const TRY: &str = "try";
const WAIT: &str = "wait";

/// The library's shared code (see `library`): what every script may use.
const PRELUDE: &str = include_str!("redis/prelude.lua");
/// WatchSession's log (see `watch`), before the prelude, which logs grants
/// and releases.
const WATCH: &str = include_str!("redis/watch.lua");
/// The field operations' helpers, which update.lua uses.
const OPS: &str = include_str!("redis/ops.lua");
/// The idempotency keys' helpers, which update.lua and delete.lua use.
const IDEMPOTENCY: &str = include_str!("redis/idempotency.lua");

pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Where the master is (a URL, or what the sentinels say).
    target: Target,
    conns: Conns,
    /// The scripts, as the Functions library every call runs.
    library: Library,
    prefix: String,
    limits: Limits,
    stats: Arc<Stats>,
    /// How long one command may take: `--redis-timeout`, plus the durability
    /// wait's timeout when there is one (a command may queue behind a wait).
    timeout: Duration,
    /// What a write waits for before it is acknowledged.
    durability: Policy,
    /// This instance's id (GetStats reports it); its first 16 characters
    /// begin every lock token it grants.
    instance: String,
    /// Where write scripts announce new versions (for other instances'
    /// caches), and this instance's wake-up channels, named in its waiters'
    /// queue entries.
    channels: Channels,
    /// The callers queued for a lock through this instance.
    waiters: Waiters,
    /// Whether this instance has looked for the data-loss markers yet.
    marker_seen: AtomicBool,
    /// The data-loss markers' keys (see `loss`).
    markers: Vec<String>,
}

impl RedisStore {
    pub async fn open(
        config: &RedisSettings,
        limits: Limits,
        stats: Arc<Stats>,
        feed: FeedSender,
    ) -> Result<RedisStore> {
        let durability = Policy::new(
            config.durability,
            config.durability_timeout,
            config.check_interval,
        );
        let timeout = config.timeout + durability.extra_time();
        *stats.durability.write() = crate::stats::Durability {
            setting: "unknown",
            wait: config.durability.to_string(),
            risks: Vec::new(),
        };
        let (target, opener) = match &config.target {
            RedisTarget::Url(url) => {
                let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| Error::StoreUnavailable(format!("bad Redis URL: {e}")))?;
                info = target::log_in(info, config);
                let pool = pool(&info, config, timeout)?;
                let target = Target::fixed(info).map_err(Error::StoreUnavailable)?;
                (target, Opener::Pool(pool))
            }
            RedisTarget::Sentinel { sentinels, master } => {
                let target =
                    Target::sentinel(sentinels, master, config).map_err(Error::StoreUnavailable)?;
                let opened = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(config.timeout))
                    .set_response_timeout(Some(timeout));
                (target, Opener::Sentinel(Box::new(opened)))
            }
            RedisTarget::Cluster { nodes } => {
                let (target, client) =
                    Target::cluster(nodes, config, timeout).map_err(Error::StoreUnavailable)?;
                (target, Opener::Cluster(Box::new(client)))
            }
        };
        let prefix = config.key_prefix.clone();
        let instance = new_token();
        let cluster = matches!(target, Target::Cluster(_));
        let markers = loss::markers(&prefix, cluster);
        let channels = Channels::new(&prefix, &instance, cluster);
        let inner = Arc::new(Inner {
            target,
            conns: Conns::new(opener, config.pool_size),
            library: Library::new(channels.publish()),
            channels,
            instance,
            prefix,
            limits,
            stats,
            timeout,
            durability,
            waiters: Waiters::default(),
            marker_seen: AtomicBool::new(false),
            markers,
        });
        let store = RedisStore { inner };
        match store.ping().await {
            // Checked before serving, so that a server that cannot honour
            // `--redis-durability` stops sessiond at once; one that comes up
            // later is checked when it does, and until then every write
            // fails at its wait.
            Ok(()) => {
                if let Ok(Err(cannot)) = store.inner.can_honour().await {
                    return Err(Error::StoreUnavailable(cannot));
                }
                // Loaded now, so that a server without Functions stops
                // sessiond at once; a server that lacks the library later
                // gets it at the first call it refuses (`library::call`).
                match store.inner.load_library().await {
                    Ok(Ok(())) => {}
                    Ok(Err(cannot)) => return Err(Error::StoreUnavailable(cannot)),
                    Err(e) => tracing::warn!(error = %e, "cannot load the Functions library yet"),
                }
                if let Err(e) = store.inner.check_marker().await {
                    tracing::warn!(error = %e, "cannot set the data-loss marker yet");
                }
                if let Err(e) = store.inner.check_durability().await {
                    tracing::warn!(error = %e, "cannot read Redis's durability settings yet");
                }
            }
            Err(e) => tracing::warn!(
                error = %e,
                "Redis is not reachable yet; calls fail with UNAVAILABLE until it is"
            ),
        }
        let inner = &store.inner;
        if inner.channels.sharded() {
            tokio::spawn(shards::subscribe(Arc::downgrade(inner), feed));
        } else {
            tokio::spawn(feed::subscribe(Arc::downgrade(inner), feed));
            tokio::spawn(feed::heartbeat(Arc::downgrade(inner)));
        }
        if inner.target.as_sentinel().is_some() {
            tokio::spawn(target::watch(Arc::downgrade(inner)));
        }
        tokio::spawn(durability::watch(Arc::downgrade(inner)));
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

    pub async fn lock(&self, key: &SessionKey, req: LockRequest) -> Result<LockGrant> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let token = inner.new_lock_token();
        if !req.wait.is_zero() {
            return inner.queue(keys, token, req).await;
        }
        let idem = req.idempotency.as_ref();
        inner.try_once(&keys, token, req.lease, idem).await?
    }

    pub async fn update(&self, key: &SessionKey, m: Mutation, g: Guards) -> Result<Written> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let l = &inner.limits;
        let mut inv = inner.library.call(Function::Update);
        keys.add_to(&mut inv);
        inner.add_idempotency_key(&mut inv, &keys, &g);
        add_guards(&mut inv, &g);
        inv.arg(flag(m.replace))
            .arg(l.idle_ttl.as_millis() as u64)
            .arg(l.max_fields)
            .arg(l.max_session_bytes)
            .arg(inner.channels.invalidate(keys.slot))
            .arg(&keys.subject)
            .arg(inner.channels.wake(keys.slot))
            .arg(m.set.len())
            .arg(m.ops.len())
            .arg(l.max_field_bytes);
        add_idempotency_args(&mut inv, &g, l);
        for (name, value) in &m.set {
            inv.arg(name.as_bytes()).arg(value.as_ref());
        }
        add_ops(&mut inv, &m.ops);
        for name in &m.delete {
            inv.arg(name.as_bytes());
        }
        inner.add_quota(&mut inv, key);
        match inner.invoke(&inv, wire::write).await? {
            WriteReply::Written { written, handover } => {
                inner.hand_over(handover, &keys);
                Ok(written)
            }
            WriteReply::Refused(refusal) => Err(refused(refusal, &g)),
            WriteReply::LimitExceeded {
                limit: Limit::MaxFields,
                value,
            } => Err(l.too_many_fields(usize::try_from(value).unwrap_or(usize::MAX))),
            WriteReply::LimitExceeded {
                limit: Limit::MaxSessionBytes,
                value,
            } => Err(l.too_large(value)),
            WriteReply::QuotaExceeded { quota, usage } => Err(l.quotas.exceeded(quota, usage)),
            WriteReply::LimitExceeded {
                limit: Limit::MaxFieldBytes { op },
                value,
            } => Err(l.field_too_long(op_field(&m, op), value)),
            WriteReply::OpRefused { refusal, op } => Err(refusal.error(op_field(&m, op))),
        }
    }

    pub async fn delete(&self, key: &SessionKey, g: Guards) -> Result<Option<u64>> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let mut inv = inner.library.call(Function::Delete);
        keys.add_to(&mut inv);
        inner.add_idempotency_key(&mut inv, &keys, &g);
        add_guards(&mut inv, &g);
        inv.arg(inner.channels.invalidate(keys.slot))
            .arg(&keys.subject)
            .arg(inner.channels.wake(keys.slot));
        add_idempotency_args(&mut inv, &g, &inner.limits);
        // Last: the quota's keys and arguments (see the prelude).
        inner.add_quota(&mut inv, key);
        match inner.invoke(&inv, wire::delete).await? {
            DeleteReply::Deleted { version, handover } => {
                inner.hand_over(handover, &keys);
                Ok(version)
            }
            DeleteReply::Refused(refusal) => Err(refused(refusal, &g)),
        }
    }

    pub async fn unlock(&self, key: &SessionKey, token: &str) -> Result<()> {
        let inner = &self.inner;
        let keys = inner.keys(key);
        let mut inv = inner.library.call(Function::Unlock);
        keys.add_to(&mut inv);
        inv.arg(token).arg(inner.channels.wake(keys.slot));
        match inner.invoke(&inv, wire::unlock).await? {
            UnlockReply::Released(handover) => {
                inner.hand_over(handover, &keys);
                Ok(())
            }
            UnlockReply::LockLost => Err(Error::LockLost),
        }
    }

    pub async fn refresh(&self, key: &SessionKey, token: &str, lease: Duration) -> Result<i64> {
        let inner = &self.inner;
        let mut inv = inner.library.call(Function::Refresh);
        inner.keys(key).add_to(&mut inv);
        inv.arg(token).arg(lease.as_millis() as u64);
        match inner.invoke(&inv, wire::refresh).await? {
            RefreshReply::Extended { lease_expires_ms } => Ok(lease_expires_ms),
            RefreshReply::LockLost => Err(Error::LockLost),
        }
    }

    /// One GCRA step of `limit` on the Redis server's clock.
    pub async fn check_rate(&self, scope: &RateScope, limit: &RateLimit) -> Result<Admitted> {
        let inner = &self.inner;
        let mut inv = inner.library.call(Function::Rate);
        inv.key(inner.rate_key(scope, &limit.name))
            .arg(limit.interval_us)
            .arg(limit.burst)
            .arg(limit.cost);
        // No durability wait: a limit's state lost in a failover admits a
        // burst early, which a wait on every check would not be worth.
        let (admitted, remaining, after): (i64, i64, i64) = inner.eval(&inv).await?;
        let (remaining, after) = (remaining.max(0) as u64, after.max(0) as u64);
        if admitted == 1 {
            Ok(Admitted {
                remaining,
                reset_after_us: after,
            })
        } else {
            Err(limit.refused(after))
        }
    }

    pub async fn ping(&self) -> Result<()> {
        let _: String = self.inner.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Whether the feed is one per shard (Redis Cluster).
    pub fn sharded(&self) -> bool {
        self.inner.channels.sharded()
    }

    /// This instance's id, as GetStats reports it.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance
    }

    pub fn pool_status(&self) -> (u64, u64) {
        self.inner.conns.status()
    }
}

impl Inner {
    /// One run of lock.lua for `token`, in `mode` (`TRY` or `WAIT`); with
    /// `join`, the waiter's first attempt joins its session's burst; with
    /// `idem`, an earlier grant under the key answers, or this one is
    /// recorded.
    async fn attempt(
        &self,
        keys: &Keys,
        token: &str,
        lease: Duration,
        mode: &'static str,
        join: Option<&Turn>,
        idem: Option<&Idempotency>,
    ) -> Result<LockReply, Fault> {
        let mut inv = self.library.call(Function::Lock);
        keys.add_to(&mut inv);
        if let Some(idem) = idem {
            inv.key(self.idempotency_key(keys, idem));
        }
        inv.arg(token)
            .arg(lease.as_millis() as u64)
            .arg(mode)
            .arg(WAITER_ALIVE.as_millis() as u64)
            .arg(self.channels.wake(keys.slot));
        match join.filter(|t| t.joins_burst()) {
            Some(turn) => inv
                .arg(turn.debounce().as_millis() as u64)
                .arg(turn.payload.as_ref())
                .arg(self.limits.max_turn_chain_bytes()),
            None => inv.arg("").arg("").arg(0),
        };
        inv.arg(idem.map(Idempotency::digest_hex).unwrap_or_default())
            .arg(self.limits.idempotency_window.as_millis() as u64);
        self.invoke(&inv, wire::lock).await
    }

    /// One attempt that does not queue: the lock (or the answer of the
    /// grant made under its key), LOCK_HELD when it is held (or promised to
    /// a waiter), or the key's refusal.
    async fn try_once(
        &self,
        keys: &Keys,
        token: String,
        lease: Duration,
        idem: Option<&Idempotency>,
    ) -> Result<Result<LockGrant>, Fault> {
        match self.attempt(keys, &token, lease, TRY, None, idem).await? {
            LockReply::Granted {
                fence,
                lease_expires_ms,
                session,
                superseded,
            } => {
                self.stats.lock_acquisitions.fetch_add(1, Relaxed);
                Ok(Ok(LockGrant {
                    token,
                    fence,
                    lease_expires_ms,
                    session,
                    superseded,
                    replayed: false,
                }))
            }
            LockReply::Held => {
                self.stats.lock_contended.fetch_add(1, Relaxed);
                Ok(Err(Error::LockHeld))
            }
            LockReply::Replayed(grant) => Ok(Ok(grant)),
            LockReply::KeyReused => Ok(Err(reused(idem))),
            LockReply::Queued { .. } | LockReply::Superseded => Err(Fault::Protocol(
                "lock script queued an attempt not to wait".into(),
            )),
        }
    }
}

/// The pool the shared connections come from. Their answers may take up to
/// `timeout` (`--redis-timeout`, plus the durability wait's when there is
/// one): redis-rs's own response timeout (500 ms by default) would
/// otherwise cut every call short of the configured one.
fn pool(info: &redis::ConnectionInfo, config: &RedisSettings, timeout: Duration) -> Result<Pool> {
    let mut pool_config = PoolConfig::new(config.pool_size);
    pool_config.timeouts = Timeouts {
        wait: Some(config.timeout),
        create: Some(config.timeout),
        recycle: Some(config.timeout),
    };
    let manager = Manager::new_with_config(
        info.clone(),
        AsyncConnectionConfig::new().set_response_timeout(Some(timeout)),
    )
    .map_err(|e| Error::StoreUnavailable(format!("bad Redis settings: {e}")))?;
    Pool::builder(manager)
        .config(pool_config)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| Error::StoreUnavailable(format!("cannot create the Redis pool: {e}")))
}

/// The refusal of a lock's idempotency key sent with another request.
fn reused(idem: Option<&Idempotency>) -> Error {
    match idem {
        Some(idem) => idem.reused(),
        None => Error::Internal("a lock key reused without an idempotency key".into()),
    }
}

/// The Redis Cluster slot of a session's keys (the slot of its hash tag).
pub fn slot_of(key: &SessionKey) -> u16 {
    slots::slot(keys::subject(key).as_bytes())
}

/// What a guard's refusal means to the caller.
fn refused(refusal: Refusal, g: &Guards) -> Error {
    match refusal {
        Refusal::LockLost => Error::LockLost,
        Refusal::LockHeld => Error::LockHeld,
        Refusal::VersionMismatch { current } => Error::VersionMismatch {
            expected: g.expected_version.unwrap_or_default(),
            current,
        },
        Refusal::KeyReused => match &g.idempotency {
            Some(idem) => idem.reused(),
            None => Error::Internal("a key reused without an idempotency key".into()),
        },
    }
}
