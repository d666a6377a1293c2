//! The bot's locked turn (lock, read the counter, write it + 1, release)
//! against sessiond's peers in the same run, so BENCHMARKS.md can put them
//! side by side:
//!
//! - `etcd-rmw`, `etcd-hot`: etcd's lock service (Lock on a lease granted
//!   once per caller, Range, Put, Unlock), `--etcd host:port`.
//! - `redis-lock-rmw`, `redis-lock-hot`: a lock the client makes on plain
//!   Redis (`SET NX PX`, retried every `--redis-lock-retry` while taken;
//!   GET; SET; a scripted release), `--redis-lock redis://...`. No fencing and
//!   nothing makes a writer hold the lock: what sessiond replaces.
//!
//! `hot` puts every caller on one key, `rmw` spreads them over `--sessions`.
//! Each run ends with the same check as sessiond's: the counters hold every
//! acknowledged increment.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::Args;
use super::workloads::{Rng, Run};

/// etcd's API, the part the bench drives (`proto/` beside this file).
#[allow(clippy::all, clippy::unwrap_used, clippy::indexing_slicing)]
mod pb {
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
    }
}

use pb::etcdserverpb::kv_client::KvClient;
use pb::etcdserverpb::lease_client::LeaseClient;
use pb::etcdserverpb::{LeaseGrantRequest, PutRequest, RangeRequest};
use pb::v3lockpb::lock_client::LockClient;
use pb::v3lockpb::{LockRequest, UnlockRequest};

/// The release of a client-side Redis lock: only by the token that holds it.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

pub(crate) enum Peer {
    Etcd(Vec<Channel>),
    RedisLock(Vec<redis::aio::MultiplexedConnection>, Duration),
}

impl Peer {
    /// The peer a workload drives, connected; `None` for sessiond's own.
    pub(crate) async fn of(workload: &str, args: &Args) -> anyhow::Result<Option<Peer>> {
        if workload.starts_with("etcd-") {
            let addr = args
                .etcd
                .ok_or_else(|| anyhow::anyhow!("{workload} needs --etcd host:port"))?;
            Ok(Some(Peer::Etcd(
                super::channels(&[addr], args.connections).await?,
            )))
        } else if workload.starts_with("redis-lock-") {
            let url = args
                .redis_lock
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("{workload} needs --redis-lock redis://..."))?;
            let client = redis::Client::open(url)?;
            let mut conns = Vec::new();
            for _ in 0..args.connections {
                conns.push(client.get_multiplexed_async_connection().await?);
            }
            Ok(Some(Peer::RedisLock(conns, args.redis_lock_retry)))
        } else {
            Ok(None)
        }
    }

    fn key(run: &Run, k: usize) -> String {
        format!("{}/n", run.id(k))
    }

    /// Sets every counter to 0.
    pub(crate) async fn prepare(&self, run: &Run) -> anyhow::Result<()> {
        for k in 0..run.sessions {
            match self {
                Peer::Etcd(chans) => {
                    let chan = chans
                        .first()
                        .ok_or_else(|| anyhow::anyhow!("no connection"))?;
                    KvClient::new(chan.clone())
                        .put(PutRequest {
                            key: Self::key(run, k).into(),
                            value: b"0".to_vec(),
                            lease: 0,
                        })
                        .await?;
                }
                Peer::RedisLock(conns, _) => {
                    let mut conn = conns
                        .first()
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("no connection"))?;
                    let _: () = redis::cmd("SET")
                        .arg(Self::key(run, k))
                        .arg(0)
                        .query_async(&mut conn)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// The sum of the counters at the end.
    pub(crate) async fn counters(&self, run: &Run) -> anyhow::Result<u64> {
        let mut sum = 0;
        for k in 0..run.sessions {
            sum += match self {
                Peer::Etcd(chans) => {
                    let chan = chans
                        .first()
                        .ok_or_else(|| anyhow::anyhow!("no connection"))?;
                    etcd_get(&mut KvClient::new(chan.clone()), Self::key(run, k)).await?
                }
                Peer::RedisLock(conns, _) => {
                    let mut conn = conns
                        .first()
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("no connection"))?;
                    let n: Option<u64> = redis::cmd("GET")
                        .arg(Self::key(run, k))
                        .query_async(&mut conn)
                        .await?;
                    n.unwrap_or(0)
                }
            };
        }
        Ok(sum)
    }

    /// `args.callers` callers over the connections, for `args.duration`.
    pub(crate) async fn drive(&self, args: &Args, run: &Arc<Run>) -> anyhow::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..args.callers {
            let run = run.clone();
            match self {
                Peer::Etcd(chans) => {
                    let chan = chans.get(i % chans.len()).cloned();
                    let chan = chan.ok_or_else(|| anyhow::anyhow!("no connection"))?;
                    let ttl = args.duration.as_secs() as i64 + 60;
                    tasks.spawn(async move { etcd_caller(i, chan, ttl, &run).await });
                }
                Peer::RedisLock(conns, retry) => {
                    let conn = conns.get(i % conns.len()).cloned();
                    let conn = conn.ok_or_else(|| anyhow::anyhow!("no connection"))?;
                    let retry = *retry;
                    tasks.spawn(async move { redis_lock_caller(i, conn, retry, &run).await });
                }
            }
        }
        tokio::time::sleep(args.duration).await;
        run.stop.store(true, Relaxed);
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    }
}

async fn etcd_get(kv: &mut KvClient<Channel>, key: String) -> Result<u64, tonic::Status> {
    let r = kv
        .range(RangeRequest {
            key: key.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(r.kvs
        .first()
        .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse().ok())
        .unwrap_or(0))
}

async fn etcd_caller(i: usize, chan: Channel, ttl: i64, run: &Run) -> anyhow::Result<()> {
    let mut rng = Rng::of(i as u64);
    let mut kv = KvClient::new(chan.clone());
    let mut lock = LockClient::new(chan.clone());
    // One lease per caller, as a client's session would hold: its locks go
    // with it if the caller dies.
    let lease = LeaseClient::new(chan)
        .lease_grant(LeaseGrantRequest { ttl, id: 0 })
        .await?
        .into_inner()
        .id;
    while !run.stop.load(Relaxed) {
        let k = rng.below(run.sessions);
        let started = Instant::now();
        let turn = async {
            let held = lock
                .lock(LockRequest {
                    name: format!("{}/lock", run.id(k)).into(),
                    lease,
                })
                .await?
                .into_inner()
                .key;
            let key = Peer::key(run, k);
            let n = etcd_get(&mut kv, key.clone()).await?;
            kv.put(PutRequest {
                key: key.into(),
                value: (n + 1).to_string().into(),
                lease: 0,
            })
            .await?;
            lock.unlock(UnlockRequest { key: held }).await?;
            Ok::<_, tonic::Status>(())
        };
        match turn.await {
            Ok(()) => {
                run.ack(k);
                run.done(started.elapsed());
            }
            Err(s) => run.error(&s),
        }
    }
    Ok(())
}

async fn redis_lock_caller(
    i: usize,
    mut conn: redis::aio::MultiplexedConnection,
    retry: Duration,
    run: &Run,
) -> anyhow::Result<()> {
    let mut rng = Rng::of(i as u64);
    let release = redis::Script::new(RELEASE);
    while !run.stop.load(Relaxed) {
        let k = rng.below(run.sessions);
        let started = Instant::now();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let lock = format!("{}/lock", run.id(k));
        let turn = async {
            loop {
                let taken: Option<String> = redis::cmd("SET")
                    .arg(&lock)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(5000)
                    .query_async(&mut conn)
                    .await?;
                if taken.is_some() {
                    break;
                }
                if run.stop.load(Relaxed) {
                    return Ok(false);
                }
                tokio::time::sleep(retry).await;
            }
            let key = Peer::key(run, k);
            let n: Option<u64> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(n.unwrap_or(0) + 1)
                .query_async(&mut conn)
                .await?;
            let _: i64 = release
                .key(&lock)
                .arg(&token)
                .invoke_async(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>(true)
        };
        match turn.await {
            Ok(true) => {
                run.ack(k);
                run.done(started.elapsed());
            }
            Ok(false) => {}
            Err(_) => run.error_named("REDIS"),
        }
    }
    Ok(())
}
