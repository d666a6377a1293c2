//! The feed on Redis Cluster: sharded pub/sub (SSUBSCRIBE, Redis 7.0), one
//! subscription per master, each watched on its own.
//!
//! The scripts SPUBLISH a session's invalidations and wake-ups on channels
//! of its slot (see `channels`), which Redis delivers only within the
//! slot's shard. So each master gets a subscriber of its own: a RESP3
//! connection that subscribes to the invalidation channel and this
//! instance's wake-up channel of every slot the master owns, then reads
//! what comes (the connection's push sender: no queue between Redis and
//! the feed but the feed's own bounded one). The shard's slots are trusted
//! (`FeedEvent::Slots`, up) once every subscription is confirmed, and
//! distrusted (down) as soon as any of these happens:
//! - the connection closes (the master died, a timeout, CLIENT KILL);
//! - Redis unsubscribes a channel by itself: a slot migrated away, whose
//!   invalidations now go to another master;
//! - `SILENCE` passes without a message: every `HEARTBEAT` the subscriber
//!   SPUBLISHes on its wake-up channel of the shard's first slot, through
//!   the shared connections (which route it to that slot's master).
//!
//! A shard that ended is subscribed again from a fresh slot map
//! (`CLUSTER SLOTS`), asked again after `RETRY` and every `PLAN`; a
//! shard whose master or slots changed in the map is ended and subscribed
//! anew, one that did not is left alone: a failover or a migration costs
//! the cache the sessions of the shards it touched, never the others'.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use redis::aio::{AsyncPushSender, SendError};
use redis::{AsyncConnectionConfig, PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};

use super::Inner;
use super::fault::Fault;
use super::feed::parse_invalidation;
use crate::store::{FeedEvent, FeedSender};

/// How often a subscriber publishes to itself, and how long a silence ends
/// it (as the whole feed's heartbeat on one server).
const HEARTBEAT: Duration = Duration::from_secs(1);
const SILENCE: Duration = Duration::from_secs(3);
/// How soon the slot map is asked again after a shard's subscription
/// ended, and how often anyway.
const RETRY: Duration = Duration::from_millis(200);
const PLAN: Duration = Duration::from_secs(5);
/// SSUBSCRIBE commands in flight at once on a subscriber's connection.
const SUBSCRIBING: usize = 256;

/// A master and the slots it owns, as one CLUSTER SLOTS answer says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shard {
    host: String,
    port: u16,
    /// Inclusive, in the answer's order.
    ranges: Vec<(u16, u16)>,
}

/// Keeps one subscriber per shard of the current slot map; each tells the
/// feed when its slots are covered and when they stop being. Ends with
/// the store.
pub(super) async fn subscribe(inner: Weak<Inner>, mut feed: FeedSender) {
    // The queue itself works: from here trust is told slot by slot.
    feed.send(FeedEvent::Up);
    let feed = Arc::new(Mutex::new(feed));
    let mut running: HashMap<Shard, tokio::task::JoinHandle<()>> = HashMap::new();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<Shard>();
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let map: Result<Value, Fault> = strong.query(redis::cmd("CLUSTER").arg("SLOTS")).await;
        drop(strong);
        match map.ok().as_ref().and_then(shards) {
            Some(map) => {
                // Shards the map no longer names are ended, and awaited:
                // their slots' `down` must reach the feed before a new
                // shard's `up` for some of the same slots.
                let gone: Vec<Shard> = running
                    .keys()
                    .filter(|s| !map.contains(s))
                    .cloned()
                    .collect();
                for shard in gone {
                    if let Some(task) = running.remove(&shard) {
                        task.abort();
                        let _ = task.await;
                    }
                }
                for shard in map {
                    if running.contains_key(&shard) {
                        continue;
                    }
                    let task = tokio::spawn(run(
                        inner.clone(),
                        shard.clone(),
                        feed.clone(),
                        ended_tx.clone(),
                    ));
                    running.insert(shard, task);
                }
            }
            None => tracing::debug!("cannot read the cluster's slot map; asking again"),
        }
        let every = if running.is_empty() { RETRY } else { PLAN };
        tokio::select! {
            Some(shard) = ended.recv() => {
                running.remove(&shard);
                while let Ok(shard) = ended.try_recv() {
                    running.remove(&shard);
                }
                tokio::time::sleep(RETRY).await;
            }
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// What a subscriber's connection hands over as it reads.
struct Listener {
    inner: Weak<Inner>,
    feed: Arc<Mutex<FeedSender>>,
    /// When the last message came, in ms since `started`.
    heard: AtomicU64,
    started: Instant,
    /// Told when the subscription is over: the connection closed, or Redis
    /// unsubscribed a channel (its slot moved).
    lost: Notify,
}

impl Listener {
    fn since_heard(&self) -> Duration {
        let now = self.started.elapsed();
        now.saturating_sub(Duration::from_millis(self.heard.load(Relaxed)))
    }
}

impl AsyncPushSender for Listener {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::SMessage => {
                self.heard
                    .store(self.started.elapsed().as_millis() as u64, Relaxed);
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (info.data.first(), info.data.get(1))
                else {
                    return Ok(());
                };
                let Some(inner) = self.inner.upgrade() else {
                    return Err(SendError);
                };
                let mut feed = self.feed.lock();
                feed.flush();
                if channel.ends_with(b":i") {
                    if let Some((key, floor)) = parse_invalidation(payload) {
                        feed.send(FeedEvent::Invalidate(key, floor));
                    }
                } else {
                    inner.waiters.wake(&String::from_utf8_lossy(payload));
                }
            }
            PushKind::SUnsubscribe | PushKind::Disconnection => self.lost.notify_one(),
            _ => {}
        }
        Ok(())
    }
}

/// One shard's subscriber: subscribes, tells the feed, publishes its
/// heartbeat, and ends when the subscription is over; then says so on
/// `ended`.
async fn run(
    inner: Weak<Inner>,
    shard: Shard,
    feed: Arc<Mutex<FeedSender>>,
    ended: mpsc::UnboundedSender<Shard>,
) {
    let listener = Arc::new(Listener {
        inner: inner.clone(),
        feed: feed.clone(),
        heard: AtomicU64::new(0),
        started: Instant::now(),
        lost: Notify::new(),
    });
    // Down when this task ends, aborted or not, once it was up.
    let mut up = Up {
        feed,
        ranges: shard.ranges.clone(),
        up: false,
    };
    let result: Result<(), Fault> = async {
        let Some(strong) = inner.upgrade() else {
            return Ok(());
        };
        let Some(info) = strong.target.cluster_node(&shard.host, shard.port) else {
            return Ok(());
        };
        let channels: Vec<String> = slots(&shard.ranges)
            .flat_map(|s| {
                [
                    strong.channels.invalidate(s).to_owned(),
                    strong.channels.wake(s).to_owned(),
                ]
            })
            .collect();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(strong.timeout))
            .set_response_timeout(Some(strong.timeout))
            .set_push_sender(listener.clone());
        drop(strong);
        let conn = redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // One command per channel: the channels of one SSUBSCRIBE must
        // share a slot.
        futures::stream::iter(channels)
            .map(|channel| {
                let mut conn = conn.clone();
                async move {
                    let answer = redis::cmd("SSUBSCRIBE")
                        .arg(channel)
                        .query_async::<Value>(&mut conn)
                        .await?;
                    confirmed(answer)
                }
            })
            .buffer_unordered(SUBSCRIBING)
            .try_for_each(|()| async { Ok(()) })
            .await?;
        listener
            .heard
            .store(listener.started.elapsed().as_millis() as u64, Relaxed);
        up.tell(true);
        let first = shard.ranges.first().map_or(0, |r| r.0);
        loop {
            tokio::select! {
                () = listener.lost.notified() => return Ok(()),
                () = tokio::time::sleep(HEARTBEAT) => {}
            }
            if listener.since_heard() > SILENCE {
                return Ok(());
            }
            let Some(inner) = inner.upgrade() else {
                return Ok(());
            };
            let beat = redis::cmd("SPUBLISH")
                .arg(inner.channels.wake(first))
                .arg("")
                .clone();
            let _: Result<i64, Fault> = inner.query_at(&beat, first).await;
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, host = %shard.host, port = shard.port, "shard subscription lost");
    }
    drop(up);
    let _ = ended.send(shard);
}

/// Tells the feed a shard's slots are down when dropped, if they were up.
struct Up {
    feed: Arc<Mutex<FeedSender>>,
    ranges: Vec<(u16, u16)>,
    up: bool,
}

impl Up {
    fn tell(&mut self, up: bool) {
        self.up = up;
        let ranges = self.ranges.clone();
        self.feed.lock().send(FeedEvent::Slots { up, ranges });
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.up {
            self.tell(false);
        }
    }
}

/// Whether an SSUBSCRIBE's answer confirms it: a refusal (an ACL without
/// the channel, a slot the node does not own) comes back as a value, not
/// as an error of the call.
fn confirmed(answer: Value) -> Result<(), Fault> {
    match answer {
        Value::Push {
            kind: PushKind::SSubscribe,
            ..
        } => Ok(()),
        Value::ServerError(e) => Err(Fault::Protocol(format!("SSUBSCRIBE refused: {e:?}"))),
        other => Err(Fault::Protocol(format!(
            "SSUBSCRIBE answered in an unknown shape: {other:?}"
        ))),
    }
}

/// Every slot of `ranges`.
fn slots(ranges: &[(u16, u16)]) -> impl Iterator<Item = u16> + '_ {
    ranges.iter().flat_map(|&(first, last)| first..=last)
}

/// The masters of a CLUSTER SLOTS answer (`[[first, last, [host, port,
/// id, ...], replicas...], ...]`) and the slots each owns; `None` when it
/// has another shape.
fn shards(reply: &Value) -> Option<Vec<Shard>> {
    let Value::Array(entries) = reply else {
        return None;
    };
    let mut shards: Vec<Shard> = Vec::new();
    for entry in entries {
        let Value::Array(entry) = entry else {
            return None;
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (entry.first(), entry.get(1), entry.get(2))
        else {
            return None;
        };
        let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1)) else {
            return None;
        };
        let host = match host {
            Value::BulkString(h) => String::from_utf8(h.clone()).ok()?,
            Value::SimpleString(h) => h.clone(),
            _ => return None,
        };
        let range = (u16::try_from(*first).ok()?, u16::try_from(*last).ok()?);
        let port = u16::try_from(*port).ok()?;
        match shards.iter_mut().find(|s| s.host == host && s.port == port) {
            Some(s) => s.ranges.push(range),
            None => shards.push(Shard {
                host,
                port,
                ranges: vec![range],
            }),
        }
    }
    for s in &mut shards {
        s.ranges.sort_unstable();
    }
    Some(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(first: i64, last: i64, port: i64) -> Value {
        Value::Array(vec![
            Value::Int(first),
            Value::Int(last),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(port), bulk("id")]),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(port + 100), bulk("r")]),
        ])
    }

    #[test]
    fn the_slot_map_groups_ranges_by_master() {
        let reply = Value::Array(vec![
            entry(5461, 10922, 7002),
            entry(0, 5000, 7001),
            entry(10923, 16383, 7003),
            entry(5001, 5460, 7001),
        ]);
        let map = shards(&reply).unwrap();
        assert_eq!(map.len(), 3);
        let first = map.iter().find(|s| s.port == 7001).unwrap();
        assert_eq!(first.ranges, vec![(0, 5000), (5001, 5460)]);
        assert_eq!(slots(&first.ranges).count(), 5461);
        assert!(shards(&Value::Array(vec![Value::Int(1)])).is_none());
        assert!(shards(&Value::Nil).is_none());
    }
}
