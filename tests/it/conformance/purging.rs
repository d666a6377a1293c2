//! PurgeSessions while bots keep working under the prefix: every session
//! nobody touched during the purge is gone, nothing outside the prefix is,
//! and no bot ever sees a version or a fencing token go back, though the
//! purge deletes its session and frees its lock under it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use sessiond::pb::*;

use super::operate::list_all;
use crate::on_both_backends;
use crate::support::{Backend, Server, lock, set};

const IDLE: usize = 400;
const BOTS: usize = 8;

async fn purge_while_bots_write(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    for i in 0..IDLE {
        c.update_session(set(&format!("t-9/idle-{i}"), &[("n", "1")]))
            .await
            .unwrap();
    }
    for i in 0..20 {
        c.update_session(set(&format!("t-90/{i}"), &[("n", "1")]))
            .await
            .unwrap();
    }

    // Each bot locks its own session, writes with the token and releases,
    // over and over; it records every version and fence it is given.
    let stop = Arc::new(AtomicBool::new(false));
    let mut bots = Vec::new();
    for i in 0..BOTS {
        let (mut c, stop) = (s.client().await, stop.clone());
        bots.push(tokio::spawn(async move {
            let id = format!("t-9/bot-{i}");
            let (mut versions, mut fences) = (Vec::new(), Vec::new());
            while !stop.load(Relaxed) {
                let Ok(held) = lock(&mut c, &id, 5000, 2000).await else {
                    continue;
                };
                fences.push(held.fencing_token);
                let mut w = set(&id, &[("n", "1")]);
                w.lock_token = held.lock_token;
                w.release_lock = true;
                match c.update_session(w).await {
                    Ok(r) => versions.push(r.into_inner().version),
                    // The purge freed the lock under this bot.
                    Err(e) => assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}"),
                }
            }
            (versions, fences)
        }));
    }

    let mut a = s.admin().await;
    let mut deleted = 0;
    let mut token = String::new();
    loop {
        let r = a
            .purge_sessions(PurgeSessionsRequest {
                namespace: String::new(),
                id_prefix: "t-9/".into(),
                page_size: 50,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        deleted += r.deleted;
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    stop.store(true, Relaxed);
    for bot in bots {
        let (versions, fences) = bot.await.unwrap();
        assert!(!versions.is_empty(), "every bot wrote");
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "versions went back: {versions:?}"
        );
        assert!(
            fences.windows(2).all(|w| w[0] < w[1]),
            "fences went back: {fences:?}"
        );
    }

    assert!(deleted >= IDLE as u64, "{deleted}");
    let left = list_all(&mut a, "t-9/", 0).await;
    assert!(
        left.iter().all(|id| id.starts_with("t-9/bot-")),
        "an idle session survived: {left:?}"
    );
    assert_eq!(list_all(&mut a, "t-90/", 0).await.len(), 20);
}

on_both_backends!(purge_while_bots_write);
