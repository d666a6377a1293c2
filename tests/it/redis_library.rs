//! The scripts as one Redis Functions library: a server that loses it (its
//! functions flushed, a restart without persistence) gets it again from the
//! next call, with nothing applied twice or lost; a server that will not
//! load it stops sessiond at the start, saying why.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessiond::pb::*;

use crate::support::{Backend, Redis, Server, counter_of, fields, free_port, get, lock};

/// An increment of field `n`, with no lock.
fn increment(id: &str) -> UpdateSessionRequest {
    UpdateSessionRequest {
        session_id: id.into(),
        ops: vec![FieldOp {
            field: "n".into(),
            op: Some(field_op::Op::Increment(1)),
        }],
        ..Default::default()
    }
}

/// Callers increment counters, half of them under the lock, while the
/// library is flushed from Redis again and again: every call whose answer
/// came was applied once, and a call refused for want of the library (when
/// a flush falls between its reload and its second attempt) was not
/// applied at all, so each counter equals the increments acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_the_library_gets_it_again() {
    const CALLERS: usize = 16;
    const IDS: [&str; 4] = ["a", "b", "c", "d"];
    let s = Server::start(Backend::Redis, &[]).await;
    let url = s.redis.as_ref().expect("a Redis server").url();
    let mut raw = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let acked: Arc<Vec<AtomicU64>> = Arc::new(IDS.iter().map(|_| AtomicU64::new(0)).collect());
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let (mut c, acked, failed, stop) = (
            s.client().await,
            acked.clone(),
            failed.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Even callers increment a and b without the lock, odd ones c
            // and d under it (an unguarded write to a locked session is
            // refused).
            let mut k = caller / 2;
            while !stop.load(Ordering::Relaxed) {
                let i = 2 * (caller % 2) + k % 2;
                k += 1;
                let id = IDS[i];
                let done = if caller % 2 == 0 {
                    c.update_session(increment(id)).await.is_ok()
                } else {
                    locked_increment(&mut c, id).await
                };
                if done {
                    acked[i].fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut flushes = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let _: () = redis::cmd("FUNCTION")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        flushes += 1;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let mut c = s.client().await;
    let mut total = 0;
    for (i, id) in IDS.iter().enumerate() {
        let got = get(&mut c, id, Consistency::Strong).await.unwrap();
        let acknowledged = acked[i].load(Ordering::Relaxed);
        assert_eq!(
            counter_of(got.session.as_ref()),
            acknowledged,
            "session {id}: its counter against the increments acknowledged"
        );
        total += acknowledged;
    }
    let failed = failed.load(Ordering::Relaxed);
    assert!(flushes >= 20, "{flushes} flushes");
    assert!(
        total > 100 * failed.max(1),
        "{total} increments acknowledged, {failed} refused, across {flushes} flushes"
    );
    // The first call after the last flush loads the library again.
    c.update_session(increment("e")).await.unwrap();
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("sessiond_*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(libraries.len(), 1, "{libraries:?}");
}

/// Lock (waiting), increment with the token, release: whether it was
/// acknowledged. A lock taken whose write then failed is let go by its
/// lease (short, so the others do not wait long).
async fn locked_increment(c: &mut crate::support::Client, id: &str) -> bool {
    let Ok(l) = lock(c, id, 500, 10_000).await else {
        return false;
    };
    let n = counter_of(l.session.as_ref());
    let req = UpdateSessionRequest {
        session_id: id.into(),
        set_fields: fields(&[("n", &(n + 1).to_string())]),
        lock_token: l.lock_token,
        release_lock: true,
        ..Default::default()
    };
    c.update_session(req).await.is_ok()
}

/// A server where FUNCTION is renamed away (as an ACL without it, or a
/// Redis before 7.0, would refuse it): sessiond does not start, and says
/// what it needs.
#[test]
fn a_server_that_will_not_load_the_library_stops_the_start() {
    let redis = Redis::start_with(&["--rename-command", "FUNCTION", ""]);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut sessiond = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--listen", &listen, "--log-level", "error"])
        .args(["--redis-url", &redis.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = sessiond.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            sessiond.kill().unwrap();
            panic!("sessiond started on a server that cannot load its library");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut sessiond.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(
        stderr.contains(
            "Redis refused sessiond's Functions library (sessiond's user needs FUNCTION LOAD \
             and FCALL): "
        ) && stderr.contains("unknown command 'FUNCTION'"),
        "{stderr}"
    );
    // Redis's echo of the arguments (the library's text) is left out.
    assert!(!stderr.contains("register_function"), "{stderr}");
}
