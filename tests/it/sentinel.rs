//! Redis behind Sentinel, through failovers: a master killed mid-run while
//! three sessiond instances make locked increments (a replica is promoted,
//! sessiond finds it through the sentinels), and a switch ordered with
//! `SENTINEL FAILOVER` while the old master stays up (demoted: the feed and
//! the connections must move, and the cache must not carry entries across).
//! The conformance suite runs on Sentinel too (`on_every_backend!`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sessiond::pb::*;

use crate::faults::{LEASE, Load, assert_fences_go_on, check_all, ids, phase, turn};
use crate::support::topology::{MASTER_NAME, Sentinels, cli, wait_for};
use crate::support::{Process, counter_of, final_state, free_port, set};

/// Three sessiond processes on the sentinels' master, with `extra` settings.
fn three(sentinels: &Sentinels, extra: &[&str]) -> Vec<Process> {
    let mut args = sentinels.args();
    args.extend(["--lease-min".into(), "20ms".into()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (0..3).map(|_| Process::start(free_port(), &args)).collect()
}

/// Kills the master mid-run and waits for the sentinels to promote a
/// replica; returns the run's history and when the master died.
async fn run_through_a_killed_master(
    sentinels: &mut Sentinels,
    ps: &[Process],
    sessions: &[String],
) -> (crate::support::History, Instant) {
    let addrs: Vec<SocketAddr> = ps.iter().map(|p| p.addr).collect();
    let load = Load::start(&addrs, sessions, 12, turn()).await;
    tokio::time::sleep(phase()).await;
    let old = sentinels.kill_master();
    let killed = Instant::now();
    let promoted = {
        let s = &*sentinels;
        tokio::task::spawn_blocking({
            let ports: Vec<u16> = s.nodes.iter().map(|n| n.port).collect();
            let addrs = s.addrs();
            move || {
                let first = addrs.split(',').next().unwrap().to_owned();
                let port: u16 = first.rsplit(':').next().unwrap().parse().unwrap();
                let mut now = 0;
                wait_for("a replica promoted", Duration::from_secs(30), || {
                    let out = cli(port, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
                    now = out.lines().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
                    now != 0 && now != old && ports.contains(&now)
                });
                now
            }
        })
        .await
        .unwrap()
    };
    eprintln!(
        "master {old} killed; {promoted} promoted after {:?}",
        killed.elapsed()
    );
    tokio::time::sleep(phase() + LEASE).await;
    (load.stop().await, killed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_loses_no_acknowledged_increment_with_replicas_1() {
    let mut sentinels = Sentinels::start(Duration::from_secs(1));
    let ps = three(&sentinels, &["--redis-durability", "replicas:1"]);
    let sessions = ids(3);
    let (h, killed) = run_through_a_killed_master(&mut sentinels, &ps, &sessions).await;
    let mut c = ps[0].client().await;
    // Acknowledged increments == final counters (within the unknown ones),
    // and every other rule of the contract.
    check_all(&h, &mut c, &sessions, LEASE).await;
    assert_fences_go_on(&h, &sessions, killed);
    for id in &sessions {
        let after = h.grants(id).iter().filter(|g| g.at > killed).count();
        assert!(after > 0, "{id}: no grant on the new master");
    }
    for p in &ps {
        let cache = p.stats().await.cache.unwrap();
        assert!(cache.feed_losses >= 1, "the feed moved: {cache:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_without_durability_reports_what_it_lost() {
    let mut sentinels = Sentinels::start(Duration::from_secs(1));
    let ps = three(&sentinels, &[]);
    let sessions = ids(3);
    let (h, killed) = run_through_a_killed_master(&mut sentinels, &ps, &sessions).await;
    let mut c = ps[0].client().await;
    let mut lost = 0;
    for id in &sessions {
        let end = final_state(&mut c, id, Duration::from_secs(20)).await;
        let (acked, _) = h.counts(id);
        lost += acked.saturating_sub(counter_of(end.as_ref()));
    }
    // Asynchronous replication may lose the last writes before the kill;
    // how many is the figure the issue asks for, not a pass mark.
    eprintln!("without --redis-durability: {lost} acknowledged increments lost");
    assert_fences_go_on(&h, &sessions, killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_switch_moves_the_feed_and_drops_the_cache() {
    let sentinels = Sentinels::start(Duration::from_secs(5));
    let ps = three(&sentinels, &[]);
    let (mut a, mut b) = (ps[0].client().await, ps[1].client().await);
    let read = |c: &mut crate::support::Client| {
        let mut c = c.clone();
        async move {
            let r = c
                .get_session(GetSessionRequest {
                    session_id: "switch".into(),
                    consistency: Consistency::Cached as i32,
                    min_version: 0,
                })
                .await
                .unwrap()
                .into_inner();
            (r.session.unwrap().version, r.from_cache)
        }
    };
    for p in &ps {
        wait_feed(p, 0).await;
    }
    let v1 = a
        .update_session(set("switch", &[("n", "1")]))
        .await
        .unwrap()
        .into_inner()
        .version;
    read(&mut b).await;
    assert_eq!(read(&mut b).await, (v1, true), "cached before the switch");
    let old = sentinels.master_port().unwrap();
    let port = sentinels.addrs();
    let port: u16 = port
        .split(',')
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cli(port, &["SENTINEL", "FAILOVER", MASTER_NAME]), "OK");
    tokio::task::spawn_blocking(move || {
        wait_for("the switch", Duration::from_secs(30), || {
            let out = cli(port, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
            out.lines()
                .nth(1)
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|p| p != old)
        })
    })
    .await
    .unwrap();
    // Every instance notices and resubscribes (on the new master).
    for p in &ps {
        wait_feed(p, 1).await;
    }
    // The entry cached before the switch is gone; writes go on (on the new
    // master: the old one refuses them as a replica) and reach B's cache
    // through the new feed.
    assert!(
        !read(&mut b).await.1,
        "the cache was dropped across the switch"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let v2 = loop {
        match a.update_session(set("switch", &[("n", "2")])).await {
            Ok(r) => break r.into_inner().version,
            Err(e) if Instant::now() < deadline => {
                eprintln!("write during the switch: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no write after the switch: {e:?}"),
        }
    };
    assert!(v2 > v1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while read(&mut b).await.0 < v2 {
        assert!(Instant::now() < deadline, "B never saw v{v2}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `p`'s feed is up after at least `losses` losses.
async fn wait_feed(p: &Process, losses: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = p.stats().await.cache.unwrap();
        if c.feed_healthy && c.feed_losses >= losses {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "feed not up after {losses} losses: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
