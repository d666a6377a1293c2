//! Start-up, overload, store outages and shutdown.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use sessiond::pb::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::conformance::{lock, set, wait_until_queued};
use crate::support::{Backend, Server, reason};

const SERVICE: &str = "sessiond.v1.SessionService";

#[test]
fn bad_config_is_one_line_and_exit_64() {
    for args in [
        &["--lease-min", "10s", "--lease-max", "1s"][..],
        &["--listen", "not-an-address"],
        &["--no-such-flag"],
        &["--cache-max-bytes", "12 parsecs"],
        &["--store", "redis"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("sessiond: bad configuration: "),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_resource_exhausted() {
    let s = Server::start(Backend::Embedded, &["--max-concurrent-calls", "2"]).await;
    let mut c = s.client().await;
    let _held = lock(&mut c, "busy", 10_000, 0).await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let mut c = c.clone();
        waiters.push(tokio::spawn(async move {
            lock(&mut c, "busy", 10_000, 2_000).await
        }));
    }
    wait_until_queued(&s, 2).await;
    let r = c.update_session(set("other", &[("a", "1")])).await;
    assert_eq!(reason(r), (Code::ResourceExhausted, "OVERLOADED".into()));
    for w in waiters {
        assert_eq!(reason(w.await.unwrap()).1, "LOCK_WAIT_TIMEOUT");
    }
    // Capacity is back once the calls finished.
    c.update_session(set("other", &[("a", "1")])).await.unwrap();
}

async fn health(s: &Server) -> ServingStatus {
    let mut h = HealthClient::new(s.channel().await);
    let r = h
        .check(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(r.status).unwrap()
}

async fn wait_for_health(s: &Server, want: ServingStatus) {
    for _ in 0..200 {
        if health(s).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("health never became {want:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_fast_and_recovers() {
    let mut s = Server::start(Backend::Redis, &["--redis-timeout", "500ms"]).await;
    let mut c = s.client().await;
    c.update_session(set("o", &[("a", "1")])).await.unwrap();
    assert_eq!(health(&s).await, ServingStatus::Serving);
    s.redis.as_mut().unwrap().stop();
    // Writes and locks fail with UNAVAILABLE: no silent local fallback.
    assert_eq!(
        reason(c.update_session(set("o", &[("a", "2")])).await),
        (Code::Unavailable, "STORE_UNAVAILABLE".into())
    );
    assert_eq!(
        reason(lock(&mut c, "o", 1000, 0).await).1,
        "STORE_UNAVAILABLE"
    );
    assert_eq!(
        reason(lock(&mut c, "o", 1000, 1000).await).1,
        "STORE_UNAVAILABLE"
    );
    let strong = GetSessionRequest {
        session_id: "o".into(),
        consistency: Consistency::Strong as i32,
        min_version: 0,
    };
    assert_eq!(
        reason(c.get_session(strong.clone()).await).1,
        "STORE_UNAVAILABLE"
    );
    wait_for_health(&s, ServingStatus::NotServing).await;
    let stats = s
        .admin()
        .await
        .get_stats(GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(stats.store.unwrap().errors >= 4);
    s.redis.as_mut().unwrap().restart();
    wait_for_health(&s, ServingStatus::Serving).await;
    // redis-server here keeps nothing on disk: the session is gone, and the
    // service works again.
    c.update_session(set("o", &[("a", "3")])).await.unwrap();
    c.get_session(strong).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains() {
    let s = Server::start(Backend::Embedded, &["--shutdown-grace", "5s"]).await;
    let mut c = s.client().await;
    let _held = lock(&mut c, "drain", 10_000, 0).await.unwrap();
    let mut c2 = c.clone();
    let waiter = tokio::spawn(async move { lock(&mut c2, "drain", 10_000, 10_000).await });
    wait_until_queued(&s, 1).await;
    let mut h = HealthClient::new(s.channel().await);
    let mut watch = h
        .watch(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first: HealthCheckResponse = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(s.shutdown());
    // Health turns NOT_SERVING, and a queued waiter is told to go elsewhere.
    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    // A watch is a call in flight too: end it, or the drain waits for it.
    drop(watch);
    assert_eq!(
        reason(waiter.await.unwrap()),
        (Code::Unavailable, "SHUTTING_DOWN".into())
    );
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained before the grace ran out"
    );
}
