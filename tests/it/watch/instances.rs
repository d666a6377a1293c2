//! Watchers across three sessiond processes on one redis-server: every
//! version written through any instance reaches the watchers of every other
//! instance in order, none skipped, and a watcher whose instance drains
//! resumes on another without a gap.

use std::collections::BTreeSet;
use std::time::Duration;

use sessiond::pb::watch_session_response::Event;
use sessiond::pb::*;
use tonic::Code;
use tonic::codec::Streaming;

use super::{next, watch};
use crate::support::{Client, Process, Redis, free_port, reason, set};

const ID: &str = "w-across";
const WRITERS: usize = 8;
const WRITES_EACH: usize = 125;

fn instance(redis: &Redis) -> Process {
    Process::start(free_port(), &["--redis-url", &redis.url()])
}

async fn feed_up(p: &Process) {
    for _ in 0..1000 {
        if p.stats().await.cache.is_some_and(|c| c.feed_healthy) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the invalidation feed never came up");
}

/// What a watcher saw: the versions of the changes, in the order they came.
#[derive(Default)]
struct Seen {
    versions: Vec<u64>,
    /// Where in `versions` a snapshot marked resync set the version.
    resyncs: BTreeSet<usize>,
    done: bool,
}

impl Seen {
    /// Takes one message; a snapshot (first, or a resync) sets where the
    /// versions go on from.
    fn take(&mut self, m: WatchSessionResponse) {
        match m.event.expect("an event") {
            Event::Snapshot(s) => {
                if let Some(last) = self.versions.last() {
                    assert!(s.resync, "a second snapshot must be marked resync");
                    assert!(m.version >= *last, "a resync never goes back");
                    self.resyncs.insert(self.versions.len());
                }
                self.versions.push(m.version);
            }
            Event::Resumed(r) => {
                assert_eq!(Some(&r.after_version), self.versions.last());
            }
            Event::Changed(c) => {
                self.done |= c.set_fields.iter().any(|f| f == "done");
                self.versions.push(m.version);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// Every version one above the one before it, from the first snapshot,
    /// but where a snapshot marked resync said what the state is now.
    fn check_contiguous(&self, who: &str) {
        for (i, pair) in self.versions.windows(2).enumerate() {
            let resync = self.resyncs.contains(&(i + 1));
            assert!(
                pair[1] == pair[0] + 1 || resync && pair[1] >= pair[0],
                "{who}: version {} followed {}",
                pair[1],
                pair[0]
            );
        }
    }
}

async fn follow_to_done(w: &mut Streaming<WatchSessionResponse>, seen: &mut Seen) {
    while !seen.done {
        seen.take(next(w).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_see_every_version_across_instances() {
    let redis = Redis::start();
    let [a, b, mut c] = [instance(&redis), instance(&redis), instance(&redis)];
    for p in [&a, &b, &c] {
        feed_up(p).await;
    }
    let (mut ca, mut cb, mut cc) = (a.client().await, b.client().await, c.client().await);
    ca.update_session(set(ID, &[("n", "start")])).await.unwrap();

    // Watchers on B and on C; the one on C will have to move.
    // Each watcher's snapshot comes first: what is written after it, it sees.
    let mut on_b = watch(&mut cb, ID, 0, false).await;
    let mut seen_b = Seen::default();
    seen_b.take(next(&mut on_b).await);
    let mut on_c = watch(&mut cc, ID, 0, false).await;
    let mut seen_c = Seen::default();
    seen_c.take(next(&mut on_c).await);
    let watcher_b = tokio::spawn(async move {
        follow_to_done(&mut on_b, &mut seen_b).await;
        (seen_b, on_b)
    });

    // Writers through A and B at once.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut client: Client = if w % 2 == 0 { ca.clone() } else { cb.clone() };
            tokio::spawn(async move {
                let mut acked = Vec::with_capacity(WRITES_EACH);
                for i in 0..WRITES_EACH {
                    let r = client
                        .update_session(set(ID, &[("n", &format!("{w}-{i}"))]))
                        .await
                        .unwrap();
                    acked.push(r.into_inner().version);
                }
                acked
            })
        })
        .collect();

    // The watcher on C reads a while, then C drains under it.
    for _ in 0..200 {
        seen_c.take(next(&mut on_c).await);
    }
    let drained = tokio::task::spawn_blocking(move || {
        c.terminate();
        c
    });
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(20), on_c.message())
            .await
            .expect("the drain did not end the watch")
        {
            Ok(Some(m)) => seen_c.take(m),
            Ok(None) => panic!("the watch ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(
        reason::<()>(Err(status)),
        (Code::Unavailable, "SHUTTING_DOWN".into())
    );
    drained.await.unwrap();
    // It resumes on A from the last version it saw.
    let last = *seen_c.versions.last().unwrap();
    let mut moved = watch(&mut ca, ID, last, false).await;
    let first = next(&mut moved).await;
    assert!(
        matches!(
            first.event,
            Some(Event::Resumed(_)) | Some(Event::Snapshot(WatchSnapshot { resync: true, .. }))
        ),
        "{first:?}"
    );
    seen_c.take(first);

    let mut acked = BTreeSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert_eq!(
        acked.len(),
        WRITERS * WRITES_EACH,
        "every write acknowledged once"
    );
    let done = ca
        .update_session(set(ID, &[("done", "1")]))
        .await
        .unwrap()
        .into_inner()
        .version;
    follow_to_done(&mut moved, &mut seen_c).await;
    let (seen_b, on_b) = watcher_b.await.unwrap();

    // B saw every version from its snapshot to the end, in order; so did
    // the watcher that moved, across its move (or from its resync).
    seen_b.check_contiguous("watcher on B");
    seen_c.check_contiguous("watcher moved from C to A");
    let all_b: BTreeSet<u64> = seen_b.versions.iter().copied().collect();
    assert!(
        acked.iter().all(|v| all_b.contains(v)),
        "B missed an acknowledged version"
    );
    assert_eq!(seen_b.versions.last(), Some(&done));
    assert_eq!(seen_c.versions.last(), Some(&done));
    assert_eq!(seen_b.versions.len() as u64, done - seen_b.versions[0] + 1);

    // Each instance counts its watcher until it goes away.
    assert_eq!(a.stats().await.watch.unwrap().watchers, 1);
    assert_eq!(b.stats().await.watch.unwrap().watchers, 1);
    drop((moved, on_b));
    for p in [&a, &b] {
        let mut waited = 0;
        while p.stats().await.watch.unwrap().watchers > 0 {
            assert!(waited < 500, "a watcher that went away still counts");
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += 1;
        }
    }
}
