//! Reads: a session reads back as written, from the cache or the store as
//! asked (`from_cache` says which), and ids that look alike never meet.

use bytes::Bytes;
use sessiond::pb::*;
use tonic::Code;

use crate::on_every_backend;
use crate::support::{Backend, Server, details, fields, get, lock, reason, set};

async fn get_missing_is_not_found(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    assert_eq!(
        reason(get(&mut c, "nobody", Consistency::Cached).await),
        (Code::NotFound, "SESSION_NOT_FOUND".into())
    );
    assert_eq!(
        reason(get(&mut c, "nobody", Consistency::Strong).await),
        (Code::NotFound, "SESSION_NOT_FOUND".into())
    );
}

async fn write_then_read_back(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let r = c
        .update_session(set("u1", &[("lang", "en"), ("n", "1")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.version, 1);
    assert!(r.expires_at.is_some());
    let strong = get(&mut c, "u1", Consistency::Strong).await.unwrap();
    assert!(!strong.from_cache);
    let sess = strong.session.unwrap();
    assert_eq!(sess.session_id, "u1");
    assert_eq!(sess.fields, fields(&[("lang", "en"), ("n", "1")]));
    assert_eq!(sess.version, 1);
    assert_eq!(sess.created_at, sess.updated_at);
    assert!(sess.expires_at.unwrap().seconds > sess.updated_at.unwrap().seconds);
    // The STRONG read filled the cache; a CACHED read is served from it.
    let cached = get(&mut c, "u1", Consistency::Cached).await.unwrap();
    assert!(cached.from_cache);
    assert_eq!(cached.session.unwrap().fields, sess.fields);
    // A write drops the cached copy: the next CACHED read sees version 2.
    let mut upd = set("u1", &[("n", "2")]);
    upd.delete_fields = vec!["lang".into(), "absent".into()];
    assert_eq!(c.update_session(upd).await.unwrap().into_inner().version, 2);
    let after = get(&mut c, "u1", Consistency::Cached).await.unwrap();
    assert!(!after.from_cache);
    let after = after.session.unwrap();
    assert_eq!(after.version, 2);
    assert_eq!(after.fields, fields(&[("n", "2")]));
    assert_eq!(after.created_at, sess.created_at);
    // replace drops every field not set.
    let mut rep = set("u1", &[("only", "x")]);
    rep.replace = true;
    assert_eq!(c.update_session(rep).await.unwrap().into_inner().version, 3);
    let after = get(&mut c, "u1", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(after.fields, fields(&[("only", "x")]));
    // Binary values round-trip untouched.
    let mut bin = UpdateSessionRequest {
        session_id: "u1".into(),
        ..Default::default()
    };
    bin.set_fields
        .insert("blob".into(), Bytes::from_static(&[0, 255, 10, 13, 0]));
    c.update_session(bin).await.unwrap();
    let after = get(&mut c, "u1", Consistency::Strong)
        .await
        .unwrap()
        .session
        .unwrap();
    assert_eq!(
        after.fields["blob"],
        Bytes::from_static(&[0, 255, 10, 13, 0])
    );
}

async fn min_version_forces_a_fresh_read(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    c.update_session(set("mv", &[("a", "1")])).await.unwrap();
    get(&mut c, "mv", Consistency::Strong).await.unwrap();
    let r = c
        .get_session(GetSessionRequest {
            session_id: "mv".into(),
            consistency: 0,
            min_version: 1,
        })
        .await
        .unwrap();
    assert!(r.get_ref().from_cache, "version 1 is cached and new enough");
    // Above the cached copy, the store is read; a store behind the version
    // the caller has seen lost data, and says so rather than answering the
    // older session as current.
    let r = c
        .get_session(GetSessionRequest {
            session_id: "mv".into(),
            consistency: 0,
            min_version: 2,
        })
        .await;
    let (code, reason, metadata) = details(r);
    assert_eq!((code, reason.as_str()), (Code::DataLoss, "VERSION_LOST"));
    assert_eq!(metadata["current_version"], "1", "the store was read");
    assert_eq!(metadata["min_version"], "2");
    c.update_session(set("mv", &[("a", "2")])).await.unwrap();
    let r = c
        .get_session(GetSessionRequest {
            session_id: "mv".into(),
            consistency: 0,
            min_version: 2,
        })
        .await
        .unwrap();
    assert_eq!(r.get_ref().session.as_ref().unwrap().version, 2);
}

async fn crafted_ids_stay_apart(b: Backend) {
    let s = Server::start(b, &[]).await;
    let mut c = s.client().await;
    let ids = [
        "a",
        "a}b",
        "{a}",
        "a{b}",
        "a:b",
        "a/b",
        "a%2Fb",
        "a%",
        "default/a",
        "ユーザー",
        "a b",
        "A",
    ];
    for (i, id) in ids.iter().enumerate() {
        c.update_session(set(id, &[("who", &i.to_string())]))
            .await
            .unwrap();
    }
    let _lock = lock(&mut c, "a}b", 5000, 0).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let got = get(&mut c, id, Consistency::Strong)
            .await
            .unwrap()
            .session
            .unwrap();
        assert_eq!(got.fields["who"], i.to_string(), "id {id:?}");
        assert_eq!(got.version, 1, "id {id:?}");
        assert_eq!(got.session_id, *id);
        if *id != "a}b" {
            // Only "a}b" is locked.
            c.update_session(set(id, &[("again", "1")])).await.unwrap();
        }
    }
}

on_every_backend!(
    get_missing_is_not_found,
    write_then_read_back,
    min_version_forces_a_fresh_read,
    crafted_ids_stay_apart,
);
