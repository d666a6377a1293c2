//! Start-up, overload, store outages and shutdown.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use sessiond::pb::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::support::scrape_metrics;
use crate::support::{
    Backend, Server, counter_of, free_port, get, lock, reason, set, wait_until_queued,
};

const SERVICE: &str = "sessiond.v1.SessionService";

#[test]
fn bad_config_is_one_line_and_exit_64() {
    for args in [
        &["--lease-min", "10s", "--lease-max", "1s"][..],
        &["--listen", "not-an-address"],
        &["--no-such-flag"],
        &["--cache-max-bytes", "12 parsecs"],
        &["--store", "redis"],
        &["--auth-tokens-file", "/nonexistent/tokens"],
        &["--otlp-sample-ratio", "1.5"],
        &["--otlp-sample-ratio=-0.1"],
        &["--otlp-endpoint", "collector:4317"],
        &["--otlp-endpoint", "https://collector:4317"],
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
    // Warm the cache.
    get(&mut c, "o", Consistency::Cached).await.unwrap();
    assert!(
        get(&mut c, "o", Consistency::Cached)
            .await
            .unwrap()
            .from_cache
    );
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
    assert_eq!(
        reason(get(&mut c, "o", Consistency::Strong).await).1,
        "STORE_UNAVAILABLE"
    );
    wait_for_health(&s, ServingStatus::NotServing).await;
    // CACHED reads too: the cache went down with the invalidation feed.
    assert_eq!(
        reason(get(&mut c, "o", Consistency::Cached).await).1,
        "STORE_UNAVAILABLE"
    );
    let stats = s.stats().await;
    assert!(stats.store.unwrap().errors >= 4);
    s.redis.as_mut().unwrap().restart();
    wait_for_health(&s, ServingStatus::Serving).await;
    // redis-server here keeps nothing on disk: the session is gone, and the
    // service works again.
    c.update_session(set("o", &[("a", "3")])).await.unwrap();
    get(&mut c, "o", Consistency::Strong).await.unwrap();
}

/// Calls share the Redis connections; killing them under load costs the
/// calls in flight on them (STORE_UNAVAILABLE, retry-safe or not), never a
/// wrong answer, and the next calls get a fresh connection without waiting
/// for one (the Redis timeout here is far longer than the test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_connections_are_replaced_under_load() {
    let s = Server::start(
        Backend::Redis,
        &["--redis-pool-size", "1", "--redis-timeout", "60s"],
    )
    .await;
    let url = s.redis.as_ref().unwrap().url();
    let mut c = s.client().await;
    c.update_session(set("k", &[("n", "0")])).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (mut c, stop) = (s.client().await, stop.clone());
        workers.push(tokio::spawn(async move {
            // CAS increments: (acknowledged, failed with STORE_UNAVAILABLE).
            let (mut acked, mut unavailable) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let read = get(&mut c, "k", Consistency::Strong).await;
                let Ok(read) = read else {
                    assert_eq!(reason(read).1, "STORE_UNAVAILABLE");
                    continue;
                };
                let session = read.session.unwrap();
                let n = counter_of(Some(&session));
                let mut write = set("k", &[("n", &(n + 1).to_string())]);
                write.expected_version = Some(session.version);
                match c.update_session(write).await {
                    Ok(_) => acked += 1,
                    Err(e) => match reason::<()>(Err(e)).1.as_str() {
                        "VERSION_MISMATCH" => {}
                        "STORE_UNAVAILABLE" => unavailable += 1,
                        other => panic!("unexpected refusal {other}"),
                    },
                }
            }
            (acked, unavailable)
        }));
    }
    let killer = redis::Client::open(url).unwrap();
    let mut conn = killer.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(killed >= 1, "sessiond had a connection to kill");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut unavailable) = (0, 0);
    let joined = tokio::time::timeout(Duration::from_secs(20), async {
        for w in workers {
            let (a, u) = w.await.unwrap();
            acked += a;
            unavailable += u;
        }
    })
    .await;
    assert!(
        joined.is_ok(),
        "calls were stuck waiting for a connection after the kills"
    );
    // Working again on new connections.
    let session = get(&mut c, "k", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    let counted = counter_of(Some(&session));
    // A write that failed with STORE_UNAVAILABLE may or may not have been
    // applied; an acknowledged one always was.
    assert!(
        acked <= counted && counted <= acked + unavailable,
        "counted {counted}, acknowledged {acked}, unavailable {unavailable}"
    );
    assert!(acked > 0);
    assert!(s.stats().await.store.unwrap().pool_size >= 1);
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

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_calls() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let s = Server::start(Backend::Embedded, &["--metrics-listen", &listen]).await;
    let mut c = s.client().await;
    const GET: &str = "grpc_service=\"sessiond.v1.SessionService\",grpc_method=\"GetSession\",grpc_type=\"unary\"";
    let before = scrape_metrics(port).await;
    assert_eq!(
        metric(&before, &format!("grpc_server_started_total{{{GET}}}")),
        0.0
    );
    c.update_session(set("m", &[("a", "1")])).await.unwrap();
    for _ in 0..3 {
        get(&mut c, "m", Consistency::Unspecified).await.unwrap();
    }
    let _ = get(&mut c, "none", Consistency::Unspecified).await;
    let _held = lock(&mut c, "m", 5000, 0).await.unwrap();
    let after = scrape_metrics(port).await;
    assert_eq!(
        metric(&after, &format!("grpc_server_started_total{{{GET}}}")),
        4.0
    );
    assert_eq!(
        metric(
            &after,
            &format!("grpc_server_handled_total{{{GET},grpc_code=\"OK\"}}")
        ),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            &format!("grpc_server_handled_total{{{GET},grpc_code=\"NotFound\"}}")
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            &format!("grpc_server_handling_seconds_count{{{GET}}}")
        ),
        4.0
    );
    assert_eq!(
        metric(
            &after,
            &format!("grpc_server_handling_seconds_bucket{{{GET},le=\"+Inf\"}}")
        ),
        4.0
    );
    assert!(
        metric(
            &after,
            &format!("grpc_server_handling_seconds_sum{{{GET}}}")
        ) > 0.0
    );
    assert_eq!(metric(&after, "sessiond_lock_acquisitions_total"), 1.0);
    assert_eq!(metric(&after, "sessiond_store_up"), 1.0);
    // The same figures as GetStats.
    let st = s.stats().await.cache.unwrap();
    assert_eq!(metric(&after, "sessiond_cache_hits_total"), st.hits as f64);
    assert_eq!(
        metric(&after, "sessiond_cache_misses_total"),
        st.misses as f64
    );
    assert!(st.hits >= 2);
}
