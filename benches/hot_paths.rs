//! Micro-benchmarks of the in-process hot paths: cache lookup, Redis key
//! encoding, request validation, and (de)serialisation of a session.
//!
//!   cargo bench --bench hot_paths

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message;
use redis::Value;
use sessiond::cache::Cache;
use sessiond::config::{Config, Settings};
use sessiond::session::{Mutation, Session, SessionKey};
use sessiond::stats::Stats;

/// A typical bot session: a few small fields and a 256-byte history.
fn session() -> Session {
    let fields = [
        ("lang".to_owned(), Bytes::from_static(b"en")),
        ("turns".to_owned(), Bytes::from_static(b"17")),
        ("busy".to_owned(), Bytes::from_static(b"0")),
        ("history".to_owned(), Bytes::from(vec![b'x'; 256])),
    ]
    .into_iter()
    .collect();
    Session {
        fields,
        version: 42,
        created_ms: 1_763_900_000_000,
        updated_ms: 1_763_900_100_000,
        expires_ms: i64::MAX,
    }
}

fn cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = Cache::new(
        1 << 30,
        Duration::from_secs(600),
        Arc::new(Stats::default()),
    );
    let keys: Vec<SessionKey> = (0..10_000)
        .map(|i| SessionKey::new("default", &format!("user-{i}")).unwrap())
        .collect();
    let s = Arc::new(session());
    rt.block_on(async {
        for k in &keys {
            cache.fill(k, s.clone()).await;
        }
    });
    let mut i = 0;
    c.bench_function("cache_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            rt.block_on(cache.get(black_box(&keys[i]), 0)).unwrap()
        })
    });
    let missing = SessionKey::new("default", "nobody").unwrap();
    c.bench_function("cache_miss", |b| {
        b.iter(|| rt.block_on(cache.get(black_box(&missing), 0)))
    });
}

fn key_encoding(c: &mut Criterion) {
    c.bench_function("redis_key_plain_id", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(64);
            sessiond::store::redis::wire::encode_into(&mut out, black_box("telegram-1234567890"));
            out
        })
    });
    c.bench_function("redis_key_crafted_id", |b| {
        b.iter(|| {
            let mut out = String::with_capacity(64);
            sessiond::store::redis::wire::encode_into(&mut out, black_box("a}b{c:d/ユーザー%"));
            out
        })
    });
}

fn validation(c: &mut Criterion) {
    let limits = Settings::new(Config::defaults()).unwrap().limits;
    let m = Mutation {
        set: vec![
            ("turns".into(), Bytes::from_static(b"18")),
            ("history".into(), Bytes::from(vec![b'x'; 256])),
        ],
        delete: vec!["draft".into()],
        ..Default::default()
    };
    c.bench_function("validate_id", |b| {
        b.iter(|| SessionKey::new("default", black_box("telegram-1234567890")).unwrap())
    });
    c.bench_function("validate_mutation", |b| {
        b.iter(|| limits.check_mutation(black_box(&m)).unwrap())
    });
}

fn serialisation(c: &mut Criterion) {
    let s = session();
    c.bench_function("session_to_proto_and_encode", |b| {
        b.iter(|| {
            sessiond::pb::Session::from_session(black_box("telegram-1234567890"), black_box(&s))
                .encode_to_vec()
        })
    });
    let bytes = sessiond::pb::Session::from_session("telegram-1234567890", &s).encode_to_vec();
    c.bench_function("proto_decode", |b| {
        b.iter(|| sessiond::pb::Session::decode(black_box(bytes.as_slice())).unwrap())
    });
    // A data hash as HGETALL returns it.
    let mut hash = Vec::new();
    for (k, v) in s.fields.iter() {
        hash.push(Value::BulkString(format!("f:{k}").into_bytes()));
        hash.push(Value::BulkString(v.to_vec()));
    }
    for (k, v) in [
        ("v", "42"),
        ("c", "1763900000000"),
        ("u", "1763900100000"),
        ("e", "1763986500000"),
        ("k", "4"),
        ("n", "300"),
    ] {
        hash.push(Value::BulkString(k.as_bytes().to_vec()));
        hash.push(Value::BulkString(v.as_bytes().to_vec()));
    }
    c.bench_function("parse_redis_hash", |b| {
        b.iter(|| sessiond::store::redis::wire::parse_session(black_box(&hash)).unwrap())
    });
}

criterion_group!(benches, cache, key_encoding, validation, serialisation);
criterion_main!(benches);
