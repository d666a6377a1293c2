//! Redis locks and the data they guard (issue 11): a grant is never taken
//! back behind its holder's back, idle expiry never eats a locked session, a
//! holder never writes into another incarnation of its session, the meta of
//! ids never written goes away, and fences never go back, even when Redis
//! loses its data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use sessiond::pb::*;
use tonic::Code;

use crate::support::{Backend, Client, Server, counter_of, fields, get, lock, reason, set, unlock};

/// A raw connection to the test server's own redis-server.
async fn raw(s: &Server) -> MultiplexedConnection {
    let url = s.redis.as_ref().expect("a Redis server").url();
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The key of session `id`'s `suffix` (d, m, l, q, w) with the default
/// prefix and namespace.
fn key(id: &str, suffix: char) -> String {
    format!("sd:{{default/{id}}}:{suffix}")
}

/// How many keys match `pattern` (SCAN, as an operator would count them).
async fn count_keys(conn: &mut MultiplexedConnection, pattern: &str) -> usize {
    let mut cursor = 0u64;
    let mut n = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .unwrap();
        n += keys.len();
        if next == 0 {
            return n;
        }
        cursor = next;
    }
}

const CALLERS: usize = 300;
const CONNECTIONS: usize = 8;
const LEASE_MS: u32 = 2000;

/// Hundreds of callers take turns on one session: lock (waiting), then write
/// +1 with the token and release. A caller whose write comes well within
/// its lease must never find its lock gone. Several Redis connections and a
/// session of some size make the replies of a releasing script and of a
/// waiter's own retry race, which is when a lock handed to a waiter that had
/// just found it its own was released again behind its back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_lock_is_never_taken_back() {
    let s = Server::start(Backend::Redis, &["--redis-pool-size", "8"]).await;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(s.client().await);
    }
    let data = "x".repeat(10_000);
    clients[0]
        .update_session(set("hot", &[("data", &data), ("n", "0")]))
        .await
        .unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let mut c = clients[i % CONNECTIONS].clone();
        let (acked, lost) = (acked.clone(), lost.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let l = lock(&mut c, "hot", LEASE_MS, 30_000).await.expect("lock");
                let lease_end = l.lease_expires_at.unwrap();
                let n = counter_of(l.session.as_ref());
                let mut w = set("hot", &[("n", &(n + 1).to_string())]);
                w.lock_token = l.lock_token;
                w.release_lock = true;
                match c.update_session(w).await {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        assert_eq!(reason::<()>(Err(e)).1, "LOCK_LOST");
                        // Redis's clock, which ends leases, is this host's.
                        if ms_before(&lease_end) > 200 {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = get(&mut clients[0], "hot", Consistency::Strong)
        .await
        .unwrap()
        .session;
    let acked = acked.load(Ordering::Relaxed);
    assert!(acked > CALLERS as u64, "the callers took turns: {acked}");
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "holders refused well within their lease ({acked} turns)"
    );
    assert_eq!(counter_of(got.as_ref()), acked, "every acknowledged +1");
}

/// Milliseconds from now until `t` on this host's clock (negative: past).
fn ms_before(t: &prost_types::Timestamp) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000 - now.as_millis() as i64
}

/// A write with `token` (and no release) that sets `pairs`.
fn held(id: &str, token: &str, pairs: &[(&str, &str)]) -> UpdateSessionRequest {
    let mut w = set(id, pairs);
    w.lock_token = token.into();
    w
}

async fn strong_fields(c: &mut Client, id: &str) -> Session {
    get(c, id, Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap()
}

/// A lease longer than the idle TTL keeps the session under its holder:
/// across the TTL, after a write of the holder's (which must not shorten
/// it), and after a refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_expiry_never_eats_a_locked_session() {
    let s = Server::start(Backend::Redis, &["--idle-ttl", "1s"]).await;
    let mut c = s.client().await;
    c.update_session(set("long", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    let l = lock(&mut c, "long", 3000, 0).await.unwrap();
    let lease_end = l.lease_expires_at.unwrap().seconds;
    let expires = l.session.as_ref().unwrap().expires_at.unwrap().seconds;
    assert!(
        expires >= lease_end,
        "the grant says the session lives to the lease's end"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        strong_fields(&mut c, "long").await.fields.len(),
        2,
        "readers still see it"
    );
    c.update_session(held("long", &l.lock_token, &[("c", "3")]))
        .await
        .expect("the holder's write finds its session");
    c.refresh_lock(RefreshLockRequest {
        session_id: "long".into(),
        lock_token: l.lock_token.clone(),
        lease_ms: 3000,
    })
    .await
    .unwrap();
    // Past the idle TTL after the write, and past the first lease's end.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut w = held("long", &l.lock_token, &[("d", "4")]);
    w.release_lock = true;
    c.update_session(w).await.expect("still the holder's");
    let got = strong_fields(&mut c, "long").await;
    assert_eq!(
        got.fields,
        fields(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]),
        "every field the holder's writes merged into"
    );
    // Released: the idle TTL applies again.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        reason(get(&mut c, "long", Consistency::Strong).await).1,
        "SESSION_NOT_FOUND"
    );
}

/// The data of a locked session disappears (as an eviction would do it) or
/// is replaced by another incarnation: the holder's write is refused with
/// LOCK_LOST (its grant was for a session that is gone), writes nothing, and
/// the lock is free again for whoever comes next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_never_writes_into_another_incarnation() {
    let s = Server::start(Backend::Redis, &[]).await;
    let mut c = s.client().await;
    let mut conn = raw(&s).await;
    c.update_session(set("gone", &[("a", "1")])).await.unwrap();
    let l = lock(&mut c, "gone", 5000, 0).await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(key("gone", 'd'))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        reason(
            c.update_session(held("gone", &l.lock_token, &[("b", "2")]))
                .await
        ),
        (Code::FailedPrecondition, "LOCK_LOST".into())
    );
    assert_eq!(
        reason(get(&mut c, "gone", Consistency::Strong).await).1,
        "SESSION_NOT_FOUND",
        "nothing written"
    );
    let next = lock(&mut c, "gone", 5000, 0)
        .await
        .expect("the lock is free");
    assert!(next.session.is_none());
    assert!(next.fencing_token > l.fencing_token);
    unlock(&mut c, "gone", next.lock_token).await.unwrap();

    // Replaced: another incarnation (created at another time) in its place.
    c.update_session(set("swap", &[("a", "1")])).await.unwrap();
    let l = lock(&mut c, "swap", 5000, 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    c.update_session(set("other", &[("x", "9")])).await.unwrap();
    let _: i64 = redis::cmd("COPY")
        .arg(key("other", 'd'))
        .arg(key("swap", 'd'))
        .arg("REPLACE")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut del = DeleteSessionRequest {
        session_id: "swap".into(),
        lock_token: l.lock_token.clone(),
        ..Default::default()
    };
    assert_eq!(reason(c.delete_session(del.clone()).await).1, "LOCK_LOST");
    assert_eq!(
        strong_fields(&mut c, "swap").await.fields,
        fields(&[("x", "9")]),
        "the other incarnation is untouched"
    );
    del.lock_token.clear();
    assert!(
        c.delete_session(del).await.unwrap().into_inner().deleted,
        "and unlocked"
    );

    // A refresh of such a grant says the same: stop working on it.
    c.update_session(set("refreshed", &[("a", "1")]))
        .await
        .unwrap();
    let l = lock(&mut c, "refreshed", 5000, 0).await.unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(key("refreshed", 'd'))
        .query_async(&mut conn)
        .await
        .unwrap();
    let refresh = RefreshLockRequest {
        session_id: "refreshed".into(),
        lock_token: l.lock_token,
        lease_ms: 5000,
    };
    assert_eq!(reason(c.refresh_lock(refresh).await).1, "LOCK_LOST");
    lock(&mut c, "refreshed", 5000, 0)
        .await
        .expect("the lock is free");
}

/// A holder's own delete and re-create are its own doing: its token still
/// writes, on a session that existed at the grant and on one that did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holders_own_recreate_is_still_its_session() {
    let s = Server::start(Backend::Redis, &[]).await;
    let mut c = s.client().await;
    c.update_session(set("own", &[("a", "1")])).await.unwrap();
    let l = lock(&mut c, "own", 5000, 0).await.unwrap();
    let del = DeleteSessionRequest {
        session_id: "own".into(),
        lock_token: l.lock_token.clone(),
        ..Default::default()
    };
    assert!(c.delete_session(del).await.unwrap().into_inner().deleted);
    tokio::time::sleep(Duration::from_millis(5)).await;
    c.update_session(held("own", &l.lock_token, &[("z", "1")]))
        .await
        .unwrap();
    let mut w = held("own", &l.lock_token, &[("y", "2")]);
    w.release_lock = true;
    c.update_session(w).await.unwrap();
    assert_eq!(
        strong_fields(&mut c, "own").await.fields,
        fields(&[("z", "1"), ("y", "2")])
    );
    let l = lock(&mut c, "new", 5000, 0).await.unwrap();
    assert!(l.session.is_none());
    for f in ["p", "q"] {
        c.update_session(held("new", &l.lock_token, &[(f, "1")]))
            .await
            .unwrap();
    }
    assert_eq!(strong_fields(&mut c, "new").await.version, 2);
}

/// Locking ids that are never written leaves nothing behind once their locks
/// are over (released, or run out); the meta of a session ever written stays,
/// so its versions go on after a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_of_ids_never_written_goes_away() {
    let s = Server::start(Backend::Redis, &[]).await;
    let mut c = s.client().await;
    let mut conn = raw(&s).await;
    for i in 0..200 {
        let id = format!("probe-{i}");
        let l = lock(&mut c, &id, 5000, 0).await.unwrap();
        unlock(&mut c, &id, l.lock_token).await.unwrap();
    }
    for i in 0..50 {
        lock(&mut c, &format!("lapse-{i}"), 100, 0).await.unwrap();
    }
    c.update_session(set("kept", &[("a", "1")])).await.unwrap();
    let l = lock(&mut c, "kept", 5000, 0).await.unwrap();
    let del = DeleteSessionRequest {
        session_id: "kept".into(),
        lock_token: l.lock_token,
        release_lock: true,
        ..Default::default()
    };
    assert!(c.delete_session(del).await.unwrap().into_inner().deleted);
    assert!(count_keys(&mut conn, "sd:*:m").await >= 251);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = usize::MAX;
    while Instant::now() < deadline {
        left = count_keys(&mut conn, "sd:*:m").await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(left, 1, "only the meta of the session ever written is left");
    // Session keys all carry the hash tag (the data-loss marker does not).
    assert_eq!(count_keys(&mut conn, "sd:{*").await, 1, "and nothing else");
    let version = c
        .update_session(set("kept", &[("b", "2")]))
        .await
        .unwrap()
        .into_inner()
        .version;
    assert_eq!(version, 2, "versions go on after the delete");
}

/// Fences never go back, even when the meta that held their high-water mark
/// is gone: expired (an id never written), flushed, or lost in a restart
/// without persistence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_never_go_back_when_redis_loses_data() {
    let mut s = Server::start(Backend::Redis, &[]).await;
    let mut c = s.client().await;
    let mut conn = raw(&s).await;
    // Many fences in a row on one id: the high-water mark may run ahead of
    // the clock.
    let mut last = 0;
    for _ in 0..500 {
        let l = lock(&mut c, "f", 5000, 0).await.unwrap();
        assert!(l.fencing_token > last);
        last = l.fencing_token;
        unlock(&mut c, "f", l.lock_token).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_keys(&mut conn, "sd:{*").await > 0 {
        assert!(Instant::now() < deadline, "the meta of 'f' went away");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let l = lock(&mut c, "f", 5000, 0).await.unwrap();
    assert!(l.fencing_token > last, "after the meta expired");
    last = l.fencing_token;
    c.update_session(held("f", &l.lock_token, &[("a", "1")]))
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let l = lock(&mut c, "f", 5000, 0).await.unwrap();
    assert!(l.fencing_token > last, "after FLUSHALL");
    last = l.fencing_token;
    let redis = s.redis.as_mut().unwrap();
    redis.stop();
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let l = loop {
        match lock(&mut c, "f", 5000, 0).await {
            Ok(l) => break l,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        l.fencing_token > last,
        "after a restart that lost everything"
    );
}
