//! Redis Cluster under change: three sessiond instances make locked
//! increments while a slot holding a session is migrated to another master
//! (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE key by key: calls meet ASK
//! and TRYAGAIN, then MOVED) and while another session's master is killed
//! and its replica promoted. With `--redis-durability replicas:1` no
//! acknowledged increment is lost; a shard that then loses its data alone
//! is noticed. The conformance suite runs on a cluster
//! too (`on_every_backend!`), and so do three instances sharing it. The
//! feed is sharded: writes and wake-ups never cross the cluster bus, and a
//! shard whose subscription is lost stops the cache for its sessions only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sessiond::pb::*;

use crate::faults::{LEASE, Load, assert_fences_go_on, check_all, ids, phase, turn};
use crate::support::topology::{Cluster, cli, shared_cluster, unique_prefix, wait_for};
use crate::support::{Client, Process, free_port, get, lock, set, unlock};

/// Three sessiond processes on `cluster`, with `extra` settings.
fn three(cluster: &Cluster, extra: &[&str]) -> Vec<Process> {
    let mut args = cluster.args();
    args.extend(["--lease-min".into(), "20ms".into()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (0..3).map(|_| Process::start(free_port(), &args)).collect()
}

/// The slot of session `id` (namespace `default`) under prefix `sd`.
fn slot_of(cluster: &Cluster, id: &str) -> u16 {
    let key = format!("sd:{{default/{id}}}:m");
    cli(cluster.any_port(), &["CLUSTER", "KEYSLOT", &key])
        .parse()
        .unwrap()
}

/// Moves `slot` to another master the way `redis-cli --cluster reshard`
/// does, one key at a time with a pause between, so that calls meet the
/// slot half moved.
fn migrate(cluster: &Cluster, slot: u16) {
    let (src, src_id) = cluster.owner(slot);
    let (dst, dst_id) = cluster
        .masters()
        .into_iter()
        .find(|(p, _)| *p != src)
        .unwrap();
    let s = slot.to_string();
    assert_eq!(
        cli(dst, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id]),
        "OK"
    );
    assert_eq!(
        cli(src, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id]),
        "OK"
    );
    loop {
        let keys = cli(src, &["CLUSTER", "GETKEYSINSLOT", &s, "1"]);
        let Some(key) = keys.lines().next().filter(|k| !k.is_empty()) else {
            break;
        };
        let dst_port = dst.to_string();
        let out = cli(
            src,
            &[
                "MIGRATE",
                "127.0.0.1",
                &dst_port,
                "",
                "0",
                "5000",
                "KEYS",
                key,
            ],
        );
        assert!(out == "OK" || out == "NOKEY", "MIGRATE {key}: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (port, _) in cluster.masters() {
        cli(port, &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id]);
    }
    eprintln!("slot {slot} moved from {src} to {dst}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_and_failover_mid_run_lose_no_acknowledged_increment() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(Duration::from_millis(1000)))
        .await
        .unwrap();
    let ps = three(
        &cluster,
        &[
            "--redis-durability",
            "replicas:1",
            "--redis-check-interval",
            "300ms",
        ],
    );
    let sessions = ids(4);
    let addrs: Vec<SocketAddr> = ps.iter().map(|p| p.addr).collect();
    let load = Load::start(&addrs, &sessions, 16, turn()).await;
    tokio::time::sleep(phase()).await;

    // A slot holding a session moves to another master, mid-run.
    let moved = slot_of(&cluster, &sessions[0]);
    let migrated = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        migrate(&cluster, moved);
        cluster
    })
    .await
    .unwrap();
    let moved_at = Instant::now();
    tokio::time::sleep(phase()).await;

    // Another session's master is killed; its replica takes over.
    let victim_slot = slot_of(&cluster, &sessions[1]);
    let (victim, _) = cluster.owner(victim_slot);
    let mut cluster = cluster;
    let node = cluster.nodes.iter_mut().find(|n| n.port == victim).unwrap();
    node.stop();
    let killed = Instant::now();
    let mut cluster = tokio::task::spawn_blocking(move || {
        wait_for("a replica promoted", Duration::from_secs(30), || {
            let port = cluster.any_port();
            let info = cli(port, &["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok")
                && cluster
                    .owner_now(victim_slot)
                    .is_some_and(|(p, _)| p != victim)
        });
        cluster
    })
    .await
    .unwrap();
    eprintln!(
        "master {victim} killed; replica promoted after {:?}",
        killed.elapsed()
    );
    // The old master comes back as the new one's replica, so that
    // `replicas:1` can be met on that shard again.
    cluster
        .nodes
        .iter_mut()
        .find(|n| n.port == victim)
        .unwrap()
        .restart();
    let cluster = tokio::task::spawn_blocking(move || {
        wait_for("the old master a replica", Duration::from_secs(30), || {
            let nodes = cli(victim, &["CLUSTER", "NODES"]);
            nodes.lines().any(|l| l.contains("myself,slave"))
        });
        cluster
    })
    .await
    .unwrap();
    tokio::time::sleep(phase() + LEASE).await;
    let h = load.stop().await;

    // The migration cost retries, not errors: no write on the moving
    // session failed while its slot moved.
    assert_eq!(
        h.unknown_between(&sessions[0], migrated, moved_at),
        0,
        "writes failed while the slot moved"
    );
    let mut c = ps[0].client().await;
    check_all(&h, &mut c, &sessions, LEASE).await;
    assert_fences_go_on(&h, &sessions, migrated);
    assert_fences_go_on(&h, &sessions, killed);
    for id in &sessions {
        let after = h.grants(id).iter().filter(|g| g.at > killed).count();
        assert!(after > 0, "{id}: no grant after the failover");
    }
    // A shard that loses its data alone is noticed: here one that does not
    // hold the slot a single marker key would live in.
    let single = cli(cluster.any_port(), &["CLUSTER", "KEYSLOT", "sd:marker"]);
    let (holder, _) = cluster.owner(single.parse().unwrap());
    let lost = [0, 8192, 16383]
        .into_iter()
        .map(|slot| cluster.owner(slot).0)
        .find(|p| *p != holder)
        .unwrap();
    assert_eq!(cli(lost, &["FLUSHALL"]), "OK");
    let deadline = Instant::now() + Duration::from_secs(10);
    // The first instance to look reports it (and sets the marker again).
    loop {
        let mut seen = 0;
        for p in &ps {
            seen += p.stats().await.store.unwrap().data_losses;
        }
        if seen > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the loss on {lost} went unseen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_a_cluster_see_each_others_writes() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let prefix = unique_prefix();
    let ps = three(cluster, &["--redis-key-prefix", &prefix]);
    feeds_up(&ps).await;
    let mut cs = Vec::new();
    for p in &ps {
        cs.push(p.client().await);
    }
    // Sessions on every shard: each write on one instance reaches the
    // others' caches through the feed (no min_version: the feed alone).
    let ids: Vec<String> = (0..30).map(|i| format!("spread-{i}")).collect();
    for id in &ids {
        cs[0].update_session(set(id, &[("n", "0")])).await.unwrap();
        for c in &mut cs[1..] {
            read(c, id).await;
        }
    }
    for id in &ids {
        let v = cs[0]
            .update_session(set(id, &[("n", "1")]))
            .await
            .unwrap()
            .into_inner()
            .version;
        for c in &mut cs[1..] {
            let deadline = Instant::now() + Duration::from_secs(5);
            while read(c, id).await < v {
                assert!(
                    Instant::now() < deadline,
                    "{id}: v{v} never reached the cache"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn read(c: &mut crate::support::Client, id: &str) -> u64 {
    c.get_session(GetSessionRequest {
        session_id: id.into(),
        consistency: Consistency::Cached as i32,
        min_version: 0,
    })
    .await
    .unwrap()
    .into_inner()
    .session
    .unwrap()
    .version
}

/// Waits until every instance's cache trusts every shard's feed.
async fn feeds_up(ps: &[Process]) {
    for p in ps {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !p.stats().await.cache.is_some_and(|c| c.feed_healthy) {
            assert!(Instant::now() < deadline, "feed never up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The plain PUBLISH messages the cluster bus delivered, over every node
/// (a PUBLISH reaches every node that way; an SPUBLISH only its shard's
/// replicas, counted apart as `publishshard`).
fn publishes_over_the_bus(cluster: &Cluster) -> u64 {
    cluster
        .nodes
        .iter()
        .filter(|n| n.pid().is_some())
        .map(|n| {
            cli(n.port, &["CLUSTER", "INFO"])
                .lines()
                .find_map(|l| l.strip_prefix("cluster_stats_messages_publish_received:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_wake_ups_stay_within_their_shard() {
    let cluster = tokio::task::spawn_blocking(shared_cluster).await.unwrap();
    let prefix = unique_prefix();
    let ps = three(cluster, &["--redis-key-prefix", &prefix]);
    feeds_up(&ps).await;
    let before = tokio::task::spawn_blocking(|| publishes_over_the_bus(shared_cluster()))
        .await
        .unwrap();
    let (mut a, mut b) = (ps[0].client().await, ps[1].client().await);
    for i in 0..60 {
        let id = format!("shard-local-{i}");
        // A write on one instance reaches the other's cache...
        a.update_session(set(&id, &[("n", "0")])).await.unwrap();
        read(&mut b, &id).await;
        let v = a
            .update_session(set(&id, &[("n", "1")]))
            .await
            .unwrap()
            .into_inner()
            .version;
        let deadline = Instant::now() + Duration::from_secs(5);
        while read(&mut b, &id).await < v {
            assert!(
                Instant::now() < deadline,
                "{id}: v{v} never reached the cache"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // ...and a lock released on one instance wakes a waiter of the
        // other.
        let held = lock(&mut a, &id, 10_000, 0).await.unwrap();
        let waiter = {
            let mut b = b.clone();
            let id = id.clone();
            tokio::spawn(async move { lock(&mut b, &id, 10_000, 5_000).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        unlock(&mut a, &id, held.lock_token).await.unwrap();
        let granted = waiter.await.unwrap().unwrap();
        unlock(&mut b, &id, granted.lock_token).await.unwrap();
    }
    let after = tokio::task::spawn_blocking(|| publishes_over_the_bus(shared_cluster()))
        .await
        .unwrap();
    assert_eq!(
        after - before,
        0,
        "plain PUBLISH messages crossed the cluster bus: every write's went to every node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_whose_feed_is_lost_is_read_from_the_store_alone() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(Duration::from_secs(5)))
        .await
        .unwrap();
    let p = Process::start(
        free_port(),
        &cluster
            .args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    feeds_up(std::slice::from_ref(&p)).await;
    // `lost` on a master other than the first node sessiond was given,
    // `kept` on another master.
    let first = cluster.nodes[0].port;
    let (lost, kept, victim, _cluster) = tokio::task::spawn_blocking(move || {
        let on = |id: &str| cluster.owner(slot_of(&cluster, id)).0;
        let lost = (0..)
            .map(|i| format!("lost-{i}"))
            .find(|id| on(id) != first)
            .unwrap();
        let victim = on(&lost);
        let kept = (0..)
            .map(|i| format!("kept-{i}"))
            .find(|id| on(id) != victim)
            .unwrap();
        (lost, kept, victim, cluster)
    })
    .await
    .unwrap();
    let mut c = p.client().await;
    for id in [&lost, &kept] {
        c.update_session(set(id, &[("n", "1")])).await.unwrap();
        cached(&mut c, id).await.unwrap();
        assert!(cached(&mut c, id).await.unwrap(), "{id} not cached");
    }

    // The victim master takes away the right to pub/sub channels: Redis
    // closes the subscriptions there, and refuses them again, while reads
    // go on.
    cli(victim, &["ACL", "SETUSER", "default", "resetchannels"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cached(&mut c, &lost).await != Ok(false) {
        assert!(
            Instant::now() < deadline,
            "a session of a shard whose feed is lost was still read from the cache"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!p.stats().await.cache.unwrap().feed_healthy);
    // The other shards' sessions are still cached (once read again: the
    // cache was dropped whole), this shard's never.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cached(&mut c, &kept).await != Ok(true) {
        assert!(
            Instant::now() < deadline,
            "the other shards' cache stopped too"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert_eq!(cached(&mut c, &lost).await, Ok(false));
        assert_eq!(cached(&mut c, &kept).await, Ok(true));
    }

    cli(victim, &["ACL", "SETUSER", "default", "allchannels"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cached(&mut c, &lost).await != Ok(true) {
        assert!(
            Instant::now() < deadline,
            "the shard's feed never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    feeds_up(std::slice::from_ref(&p)).await;
}

/// Whether a CACHED read of `id` was answered from the cache; the error
/// code when it failed.
async fn cached(c: &mut Client, id: &str) -> Result<bool, tonic::Code> {
    get(c, id, Consistency::Cached)
        .await
        .map(|r| r.from_cache)
        .map_err(|s| s.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_stops_only_its_own_sessions() {
    // No failover while the master is frozen: the cluster still counts on
    // it, as it would for a master stalled by a slow disk or a long command.
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(Duration::from_secs(60)))
        .await
        .unwrap();
    let mut args = cluster.args();
    args.extend(["--redis-timeout".into(), "300ms".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Process::start(free_port(), &args);
    feeds_up(std::slice::from_ref(&p)).await;
    // Sessions on every master, found before anything hangs (the helpers
    // ask the nodes).
    let (ids, hung, cluster) = tokio::task::spawn_blocking(move || {
        let on = |id: &str| cluster.owner(slot_of(&cluster, id)).0;
        let ids: Vec<(String, u16)> = (0..30)
            .map(|i| format!("hang-{i}"))
            .map(|id| {
                let port = on(&id);
                (id, port)
            })
            .collect();
        let hung = ids[0].1;
        (ids, hung, cluster)
    })
    .await
    .unwrap();
    let mut c = p.client().await;
    for (id, _) in &ids {
        c.update_session(set(id, &[("n", "1")])).await.unwrap();
    }

    let node = cluster.nodes.iter().find(|n| n.port == hung).unwrap();
    node.pause();
    // For a few seconds, every call on another master's sessions succeeds,
    // while those of the hung one's fail within the timeout.
    let until = Instant::now() + Duration::from_secs(4);
    let (mut ok, mut failed_elsewhere, mut failed_hung) = (0, Vec::new(), 0);
    while Instant::now() < until {
        for (id, port) in &ids {
            let r = c.update_session(set(id, &[("n", "2")])).await;
            match (r, *port == hung) {
                (Ok(_), false) => ok += 1,
                (Err(e), false) => failed_elsewhere.push(e.code()),
                (Err(e), true) => {
                    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                    failed_hung += 1;
                }
                (Ok(_), true) => panic!("a write to a frozen master succeeded"),
            }
        }
    }
    node.resume();
    assert!(failed_hung > 0);
    assert!(
        failed_elsewhere.is_empty(),
        "{} calls to live masters failed while another hung ({ok} succeeded): {:?}",
        failed_elsewhere.len(),
        &failed_elsewhere[..failed_elsewhere.len().min(5)]
    );
    // Once it answers again, so do its sessions.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c
        .update_session(set(&ids[0].0, &[("n", "3")]))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the master never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
