//! Every check costs O(request size), counts first: an UpdateSession of
//! tens of thousands of names is refused on its size or its counts before
//! any name is compared, and the server keeps answering others meanwhile.
//! (The request, 60,000 names to set and 90,000 to delete, once took
//! 15.5 s of CPU: the overlap of sets and deletes was found by comparing
//! every pair, before the counts were checked.)

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use sessiond::pb::*;
use tonic::Code;

use super::canary;
use crate::on_both_backends;
use crate::support::{Backend, Server, details, get};

/// An UpdateSession setting `set` names (with `value_len`-byte values) and
/// deleting `delete` other names; `overlap` also deletes the last name set.
fn many_names(set: usize, delete: usize, value_len: usize, overlap: bool) -> UpdateSessionRequest {
    let value = Bytes::from(vec![b'v'; value_len]);
    let mut delete_fields: Vec<String> = (0..delete).map(|i| format!("gone-{i:06}")).collect();
    if overlap {
        delete_fields.pop();
        delete_fields.push(format!("kept-{:06}", set - 1));
    }
    UpdateSessionRequest {
        session_id: "target".into(),
        set_fields: (0..set)
            .map(|i| (format!("kept-{i:06}"), value.clone()))
            .collect(),
        delete_fields,
        ..Default::default()
    }
}

/// Sends `req` with a 10 s deadline (so code that took minutes fails the
/// test instead of hanging it) and returns code, reason, `limit` metadata
/// and the time the refusal took; then checks the canary and that nothing
/// was written.
async fn refused(s: &Server, req: UpdateSessionRequest) -> (Code, String, String, Duration) {
    let mut c = s.client().await;
    let bytes = req.encoded_len();
    let mut req = tonic::Request::new(req);
    req.set_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let (code, reason, md) = details(c.update_session(req).await);
    let took = started.elapsed();
    let canary_took = canary(&mut c, None).await;
    println!(
        "{bytes} bytes refused with {code:?}/{reason} in {took:?}; canary then took {canary_took:?}"
    );
    assert_eq!(
        get(&mut c, "target", Consistency::Strong)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound,
        "nothing was written"
    );
    let limit = md.get("limit").cloned().unwrap_or_default();
    (code, reason, limit, took)
}

/// The 4 MiB request, with the default limits: above the decoding
/// limit derived from --max-session-bytes (1 MiB + 76 KiB), so it is refused
/// from its length prefix, before its names are decoded.
async fn a_4_mib_update_is_refused_on_its_size(b: Backend) {
    let s = Server::start(b, &[]).await;
    let req = many_names(60_000, 90_000, 48, false);
    assert!(req.encoded_len() > 4 << 20, "{}", req.encoded_len());
    let (code, reason, limit, took) = refused(&s, req).await;
    assert_eq!(
        (code, reason.as_str(), limit.as_str()),
        (Code::InvalidArgument, "LIMIT_EXCEEDED", "max_request_bytes")
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// The same names in a request the decoding limit admits (raised
/// --max-session-bytes): refused on the count of names to delete, at once.
async fn many_names_are_refused_on_their_count(b: Backend) {
    let s = Server::start(b, &["--max-session-bytes", "8MiB"]).await;
    let req = many_names(60_000, 90_000, 0, false);
    let (code, reason, limit, took) = refused(&s, req).await;
    assert_eq!(
        (code, reason.as_str(), limit.as_str()),
        (Code::InvalidArgument, "LIMIT_EXCEEDED", "max_fields")
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// Counts within the limits (raised --max-fields): the one name both set
/// and deleted, at the very end, is found through a hash set.
async fn overlap_is_found_in_linear_time(b: Backend) {
    let s = Server::start(
        b,
        &["--max-fields", "100000", "--max-session-bytes", "8MiB"],
    )
    .await;
    let req = many_names(60_000, 90_000, 0, true);
    let (code, reason, _, took) = refused(&s, req).await;
    assert_eq!(
        (code, reason.as_str()),
        (Code::InvalidArgument, "INVALID_FIELD")
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// A request just within every limit at once is still served: the decoding
/// limit leaves room for names and framing beyond --max-session-bytes.
async fn a_full_update_within_the_limits_is_served(b: Backend) {
    let s = Server::start(b, &["--max-fields", "4", "--max-session-bytes", "64KiB"]).await;
    let mut c = s.client().await;
    let name = |i: usize| format!("{i:0>256}");
    let mut req = UpdateSessionRequest {
        session_id: "i".repeat(256),
        set_fields: (0..4)
            .map(|i| (name(i), Bytes::from(vec![b'v'; 16 * 1024 - 256])))
            .collect(),
        delete_fields: (4..8).map(name).collect(),
        ..Default::default()
    };
    assert!(req.encoded_len() > 64 * 1024, "{}", req.encoded_len());
    let written = c.update_session(req.clone()).await.unwrap().into_inner();
    assert_eq!(written.version, 1);
    // One byte more of value is over max_session_bytes, and refused as such.
    req.set_fields
        .insert(name(0), Bytes::from(vec![b'v'; 16 * 1024 - 255]));
    let (code, reason, md) = details(c.update_session(req).await);
    assert_eq!(
        (code, reason.as_str()),
        (Code::InvalidArgument, "LIMIT_EXCEEDED")
    );
    assert_eq!(md["limit"], "max_session_bytes");
}

on_both_backends!(
    a_4_mib_update_is_refused_on_its_size,
    many_names_are_refused_on_their_count,
    overlap_is_found_in_linear_time,
    a_full_update_within_the_limits_is_served,
);
