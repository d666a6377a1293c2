//! ListSessions over 10,000 sessions while writes go on: every session that
//! lives through the listing is listed, none twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use futures::StreamExt;
use sessiond::pb::*;

use super::operate::list_all;
use crate::on_both_backends;
use crate::support::{Backend, Server, set};

const SESSIONS: usize = 10_000;

async fn listing_10k_while_writing(b: Backend) {
    let s = Server::start(b, &[]).await;
    let c = s.client().await;
    let ids: Vec<String> = (0..SESSIONS).map(|i| format!("l/{i:05}")).collect();
    futures::stream::iter(ids.iter().cloned())
        .for_each_concurrent(32, |id| {
            let mut c = c.clone();
            async move {
                c.update_session(set(&id, &[("n", "0")])).await.unwrap();
            }
        })
        .await;

    // Writers: rewrite listed sessions, and create and delete others, under
    // the prefix and beside it, for as long as the listing runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (mut c, stop, writes) = (c.clone(), stop.clone(), writes.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Relaxed) {
                let listed = format!("l/{:05}", (n * 7919 + w * 2503) % SESSIONS);
                c.update_session(set(&listed, &[("n", "1")])).await.unwrap();
                let churn = [format!("l/churn-{w}-{n}"), format!("m/{w}-{n}")];
                for id in &churn {
                    c.update_session(set(id, &[("n", "1")])).await.unwrap();
                }
                if n.is_multiple_of(2) {
                    c.delete_session(DeleteSessionRequest {
                        session_id: churn[0].clone(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                }
                writes.fetch_add(3, Relaxed);
                n += 1;
            }
        }));
    }

    let mut a = s.admin().await;
    let listed = list_all(&mut a, "l/", 250).await;
    stop.store(true, Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        writes.load(Relaxed) > 0,
        "the writes went on during the listing"
    );

    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "an id was listed twice");
    let missed: Vec<&String> = ids.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missed.is_empty(),
        "{} missed, e.g. {:?}",
        missed.len(),
        missed.first()
    );
    assert!(listed.iter().all(|id| id.starts_with("l/")));
}

on_both_backends!(listing_10k_while_writing);
