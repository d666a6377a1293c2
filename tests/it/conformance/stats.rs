//! What operators see: GetStats figures after known calls, and a request id
//! on every answer.

use sessiond::pb::*;

use crate::on_every_backend;
use crate::support::{Backend, Server, get, set};

async fn stats_and_request_ids(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let r = c.update_session(set("st", &[("a", "1")])).await.unwrap();
    let rid = r
        .metadata()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(uuid::Uuid::parse_str(&rid).unwrap().get_version_num(), 4);
    // A caller's own request id is kept.
    let mut req = tonic::Request::new(GetSessionRequest {
        session_id: "st".into(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-request-id", "bot-7f3a".parse().unwrap());
    let r = c.get_session(req).await.unwrap();
    assert_eq!(r.metadata().get("x-request-id").unwrap(), "bot-7f3a");
    get(&mut c, "st", Consistency::Cached).await.unwrap();
    let _ = get(&mut c, "missing", Consistency::Cached).await;
    let st = s.stats().await;
    assert_eq!(
        st.store_backend,
        if b != Backend::Embedded {
            "redis"
        } else {
            "embedded"
        }
    );
    assert!(!st.instance_id.is_empty());
    let cache = st.cache.unwrap();
    assert!(cache.hits >= 1 && cache.misses >= 2, "{cache:?}");
    assert!(cache.entries >= 1 || cache.weighted_bytes > 0 || cache.hits >= 1);
    let gets = st.rpcs.iter().find(|r| r.method == "GetSession").unwrap();
    assert_eq!((gets.calls, gets.errors), (3, 1));
    assert!(gets.latency_us.unwrap().p50 > 0.0);
    assert!(st.store.unwrap().healthy);
}

on_every_backend!(stats_and_request_ids);
