//! Redis Cluster under change: three sessiond instances make locked
//! increments while a slot holding a session is migrated to another master
//! (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE key by key: calls meet ASK
//! and TRYAGAIN, then MOVED) and while another session's master is killed
//! and its replica promoted. With `--redis-durability replicas:1` no
//! acknowledged increment is lost; a shard that then loses its data alone
//! is noticed. The conformance suite runs on a cluster
//! too (`on_every_backend!`), and so do three instances sharing it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sessiond::pb::*;

use crate::faults::{LEASE, Load, assert_fences_go_on, check_all, ids, phase, turn};
use crate::support::topology::{Cluster, cli, shared_cluster, unique_prefix, wait_for};
use crate::support::{Process, free_port, set};

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
    for p in &ps {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !p.stats().await.cache.is_some_and(|c| c.feed_healthy) {
            assert!(Instant::now() < deadline, "feed never up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
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
