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
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::Inner;
use super::durability::Durable;
use super::fault::Fault;
use super::library::{self, Call};
use super::target::Target;
use super::wire::Reply;

/// The connections calls share. A multiplexed connection pipelines every
/// command in flight on it, so calls need no connection of their own, and
/// checking one out of the pool per call would cost a round trip
/// (deadpool-redis PINGs every connection it hands out): each slot keeps a
/// pooled connection checked out, and calls take the slots in turn. The pool
/// opens and checks connections; it is asked again only for a slot whose
/// connection failed or timed out. With Sentinel there is no pool: a slot
/// opens its connection to the master the sentinels name at that moment.
pub(super) struct Conns {
    opener: Opener,
    /// Never empty (see `new`).
    slots: Box<[Slot]>,
    next: AtomicUsize,
    /// Told each time a slot opens a connection: Redis may have restarted
    /// or failed over, so its durability settings are read again.
    pub(super) opened: Arc<tokio::sync::Notify>,
}

/// Where a slot gets a connection.
pub(super) enum Opener {
    /// A fixed server's pool.
    Pool(Pool),
    /// The master the sentinels name (see `target`), opened with these
    /// settings.
    Sentinel(Box<AsyncConnectionConfig>),
    /// Redis Cluster: a slot holds one cluster connection, which routes
    /// each command to the node that owns its keys' slot and follows
    /// MOVED and ASK.
    Cluster(Box<ClusterClient>),
}

/// A connection calls run commands on: to one server, or to a cluster.
#[derive(Clone)]
pub(super) enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How many times a script and its wait are sent again where a cluster's
/// MOVED or ASK points, or after TRYAGAIN.
const REDIRECTS: usize = 8;

impl Conn {
    /// Sends `script` and `wait` in one write, and returns their answers:
    /// the wait follows the script on the connection that ran it. A cluster
    /// connection follows MOVED and ASK for single commands but hands back a
    /// pipeline's answers as they came, so here a script answered with
    /// MOVED, ASK (a slot being migrated) or TRYAGAIN (its keys half moved)
    /// did not run, and both are sent again where the answer points (behind
    /// ASKING for ASK) or after a pause.
    pub(super) async fn script_and_wait(
        &mut self,
        script: &Cmd,
        wait: &Cmd,
    ) -> redis::RedisResult<(Value, Option<Value>)> {
        let mut pipe = redis::pipe();
        pipe.add_command(script.clone()).add_command(wait.clone());
        let conn = match self {
            Conn::Node(c) => return split(c.req_packed_commands(&pipe, 0, 2).await?),
            Conn::Cluster(c) => c,
        };
        let mut answers = split(conn.req_packed_commands(&pipe, 0, 2).await?)?;
        for _ in 0..REDIRECTS {
            let Value::ServerError(e) = &answers.0 else {
                return Ok(answers);
            };
            let asking = match e.kind() {
                Some(redis::ServerErrorKind::Ask) => true,
                Some(redis::ServerErrorKind::Moved) => false,
                Some(redis::ServerErrorKind::TryAgain) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    answers = split(conn.req_packed_commands(&pipe, 0, 2).await?)?;
                    continue;
                }
                _ => return Ok(answers),
            };
            let redirect = redis::RedisError::from(e.clone());
            let Some((host, port)) = redirect
                .redirect_node()
                .and_then(|(addr, _)| addr.rsplit_once(':'))
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            else {
                return Ok(answers);
            };
            let mut again = redis::pipe();
            if asking {
                again.add_command(redis::cmd("ASKING"));
            }
            again.add_command(script.clone()).add_command(wait.clone());
            let at = SingleNodeRoutingInfo::ByAddress { host, port };
            let skip = usize::from(asking);
            answers = split(conn.route_pipeline(again, skip, 2, at).await?)?;
        }
        Ok(answers)
    }
}

/// Whether Redis Cluster refused a call without running it, or it was
/// never sent: safe to send again, unlike one whose connection broke.
fn never_ran(e: &redis::RedisError) -> bool {
    use redis::RetryMethod::{AskRedirect, MovedRedirect, RefreshSlotsAndRetry, WaitAndRetry};
    let refused = matches!(e.kind(), redis::ErrorKind::Server(_))
        && matches!(
            e.retry_method(),
            MovedRedirect | AskRedirect | WaitAndRetry | RefreshSlotsAndRetry
        );
    refused || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
}

/// A script's answer and its wait's, from their pipeline's.
fn split(answers: Vec<Value>) -> redis::RedisResult<(Value, Option<Value>)> {
    let mut answers = answers.into_iter();
    let script = answers.next().ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "no answer to a script and its durability wait",
        ))
    })?;
    Ok((script, answers.next()))
}

/// A slot's connection: checked out of the pool, or opened directly.
enum Held {
    Pooled(deadpool_redis::Connection),
    Direct(Conn),
}

#[derive(Default)]
struct Slot {
    conn: Mutex<Option<Held>>,
    /// Held by the one call that opens the slot's connection; the others
    /// wait for it rather than ask the pool, which has no more connections
    /// than slots.
    opening: tokio::sync::Mutex<()>,
}

impl Slot {
    fn get(&self) -> Option<Conn> {
        match self.conn.lock().as_ref()? {
            Held::Pooled(pooled) => Some(Conn::Node(MultiplexedConnection::clone(pooled))),
            Held::Direct(conn) => Some(conn.clone()),
        }
    }

    /// Empties the slot; a pooled connection leaves the pool for good rather
    /// than being recycled.
    fn close(&self) {
        if let Some(Held::Pooled(pooled)) = self.conn.lock().take() {
            drop(deadpool_redis::Connection::take(pooled));
        }
    }
}

impl Conns {
    /// `n` slots; at least one (the configuration refuses a pool of 0).
    pub(super) fn new(opener: Opener, n: usize) -> Conns {
        Conns {
            opener,
            slots: (0..n.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            opened: Arc::default(),
        }
    }

    /// Runs `command` on the next slot's connection within `timeout`. A
    /// failure of the connection itself (not an error reply) or a timeout
    /// empties the slot and closes its connection, so that the next call
    /// through the slot gets a fresh one. Not a cluster connection's: it
    /// holds one connection per node and repairs them itself, and a call
    /// that failed on one node says nothing of the others; closing it would
    /// make every call wait for a fresh one, which connects to every node
    /// given, a hung one too.
    ///
    /// A cluster connection resends nothing by itself (`retries(0)`, see
    /// `Target::cluster`): a call whose connection broke may have run, and
    /// run again it would apply a write twice. A call Redis refused without
    /// running it (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) or that never left
    /// (no connection to the node yet) is sent again here, after a pause
    /// that lets the connection rebuild its slot map or a migration move on.
    async fn run<T, F>(
        &self,
        target: &Target,
        timeout: Duration,
        mut command: impl FnMut(Conn) -> F,
    ) -> Result<T, Fault>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let i = self.next.fetch_add(1, Relaxed) % self.slots.len();
        #[allow(clippy::indexing_slicing)]
        // reason: `i` is a remainder of the length, and `new` makes the length at least 1
        let slot = &self.slots[i];
        let cluster = matches!(self.opener, Opener::Cluster(_));
        let result = tokio::time::timeout(timeout, async {
            let mut sent = 0u32;
            let answer = loop {
                let conn = self.connection(target, slot).await?;
                // Boxed: redis-rs's futures are several KB, and every
                // layer above would otherwise move them whole.
                match Box::pin(command(conn)).await {
                    Err(e) if cluster && sent < REDIRECTS as u32 && never_ran(&e) => {
                        sent += 1;
                        tokio::time::sleep(Duration::from_millis(5 << sent.min(5))).await;
                    }
                    answer => break answer,
                }
            };
            answer.map_err(|e| {
                // READONLY: the server was a master and is a replica now
                // (a failover demoted it); the next connection goes to the
                // master the sentinels name.
                if !cluster
                    && (e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_unrecoverable_error()
                        || e.code() == Some("READONLY"))
                {
                    slot.close();
                }
                Fault::Redis(e)
            })
        })
        .await;
        match result {
            Ok(result) => result,
            Err(_elapsed) => {
                if !cluster {
                    slot.close();
                }
                Err(Fault::Timeout(timeout))
            }
        }
    }

    async fn connection(&self, target: &Target, slot: &Slot) -> Result<Conn, Fault> {
        if let Some(conn) = slot.get() {
            return Ok(conn);
        }
        // Boxed: opening a connection is a future of about 7 KB, which
        // every call's future would otherwise carry and move.
        Box::pin(self.open(target, slot)).await
    }

    /// Opens `slot`'s connection, unless another call did meanwhile.
    async fn open(&self, target: &Target, slot: &Slot) -> Result<Conn, Fault> {
        let _opening = slot.opening.lock().await;
        if let Some(conn) = slot.get() {
            return Ok(conn);
        }
        let (conn, held) = match (&self.opener, target.as_sentinel()) {
            (Opener::Sentinel(config), Some(sentinel)) => {
                let conn = Conn::Node(sentinel.open(config).await?);
                (conn.clone(), Held::Direct(conn))
            }
            (Opener::Pool(pool), _) => {
                let pooled = pool.get().await?;
                let conn = Conn::Node(MultiplexedConnection::clone(&pooled));
                (conn, Held::Pooled(pooled))
            }
            (Opener::Cluster(client), _) => {
                let conn = Conn::Cluster(client.get_async_connection().await?);
                (conn.clone(), Held::Direct(conn))
            }
            (Opener::Sentinel(_), None) => {
                return Err(Fault::NoMaster("no sentinels configured".into()));
            }
        };
        *slot.conn.lock() = Some(held);
        self.opened.notify_waiters();
        Ok(conn)
    }

    /// Closes every slot's connection (the master moved).
    pub(super) fn close_all(&self) {
        for slot in &self.slots {
            slot.close();
        }
    }

    /// The connections open and idle, as the pool counts them (with
    /// Sentinel, the slots holding one, all of which are shared).
    pub(super) fn status(&self) -> (u64, u64) {
        match &self.opener {
            Opener::Pool(pool) => {
                let s = pool.status();
                (s.size as u64, s.available as u64)
            }
            Opener::Sentinel(_) | Opener::Cluster(_) => {
                let open = self.slots.iter().filter(|s| s.get().is_some()).count() as u64;
                (open, open)
            }
        }
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
            .run(&self.target, self.timeout, |mut c| async move {
                cmd.query_async::<T>(&mut c).await
            })
            .await;
        self.settle(result)
    }

    /// Runs a plain command like `query`, on a cluster on the master that
    /// owns `slot` (as the cluster connection's slot map says; a MOVED
    /// answer updates it), on one server there.
    pub(super) async fn query_at<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
        slot: u16,
    ) -> Result<T, Fault> {
        let result = self
            .conns
            .run(&self.target, self.timeout, |c| async move {
                match c {
                    Conn::Node(mut c) => cmd.query_async::<T>(&mut c).await,
                    Conn::Cluster(mut c) => {
                        let at =
                            SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                        let value = c
                            .route_command(cmd.clone(), RoutingInfo::SingleNode(at))
                            .await?;
                        Ok(T::from_redis_value(value)?)
                    }
                }
            })
            .await;
        self.settle(result)
    }

    /// Runs a command that is not a call (the durability checks): an error
    /// reply to it (CONFIG denied by an ACL, a command renamed) says nothing
    /// of the store's health, so its outcome is not counted.
    pub(super) async fn ask<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, Fault> {
        self.conns
            .run(&self.target, self.timeout, |mut c| async move {
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
        call: &Call<'_>,
        parse: fn(&Value) -> Result<Reply<T>, Fault>,
    ) -> Result<T, Fault> {
        let wait = self.durability.wait.as_ref();
        let cmd = &call.cmd();
        let library = &self.library;
        let result = self
            .conns
            .run(&self.target, self.timeout, |mut c| async move {
                let Some(wait) = wait else {
                    return library::call(library, &mut c, cmd)
                        .await
                        .map(|v| (v, Ok(())));
                };
                let mut durable = Durable::new(c, wait);
                let value = library::call(library, &mut durable, cmd).await?;
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

    /// Runs a script that writes nothing a client's data depends on (a
    /// rate limit's state, a watch's log position) and reads its reply as
    /// `T`: no durability wait.
    pub(super) async fn eval<T: redis::FromRedisValue>(&self, call: &Call<'_>) -> Result<T, Fault> {
        let cmd = &call.cmd();
        let library = &self.library;
        let result = self
            .conns
            .run(&self.target, self.timeout, |mut c| async move {
                let value = library::call(library, &mut c, cmd).await?;
                Ok(T::from_redis_value(value)?)
            })
            .await;
        self.settle(result)
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
