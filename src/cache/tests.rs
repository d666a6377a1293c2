//! The cache's own rules: the byte bound, recency, age, floors, clearing.

use super::*;

fn key(i: usize) -> SessionKey {
    SessionKey::new("default", &format!("user-{i:05}")).unwrap()
}

fn session(version: u64, bytes: usize) -> Arc<Session> {
    Arc::new(Session {
        fields: [("data".to_owned(), bytes::Bytes::from(vec![b'x'; bytes]))]
            .into_iter()
            .collect(),
        version,
        expires_ms: now_ms() + 60_000,
        ..Default::default()
    })
}

fn cache(max_bytes: u64, max_age: Duration) -> (Cache, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    (Cache::new(max_bytes, max_age, stats.clone()), stats)
}

#[tokio::test]
async fn what_it_holds_stays_within_the_bound_and_is_counted() {
    let (c, stats) = cache(64 * 1024, Duration::from_secs(60));
    let one = u64::from(weigh(&key(0), &Entry::Present(session(1, 256))));
    for i in 0..2000 {
        c.fill(&key(i), session(1, 256)).await;
        let (entries, bytes) = c.size();
        assert!(bytes <= 64 * 1024, "{bytes} bytes after {i} fills");
        assert_eq!(
            bytes,
            entries * one,
            "the charge is the sum of the entries'"
        );
    }
    let (entries, _) = c.size();
    assert!(
        entries > 64,
        "an eviction drops a part, not all: {entries} left"
    );
    assert_eq!(stats.cache_evictions.load(Relaxed), 2000 - entries);
    // Every session costs at least its bytes and its key's.
    assert!(one > 256 + "user-00000".len() as u64 + 64);
}

#[tokio::test]
async fn a_session_read_all_along_outlives_ones_never_read_again() {
    let (c, _) = cache(64 * 1024, Duration::from_secs(60));
    c.fill(&key(0), session(1, 256)).await;
    for i in 1..2000 {
        assert!(c.get(&key(0), 0).await.is_some(), "evicted after {i} fills");
        c.fill(&key(i), session(1, 256)).await;
    }
    assert!(
        c.get(&key(1), 0).await.is_none(),
        "the oldest unread one went"
    );
}

#[tokio::test]
async fn a_copy_older_than_the_max_age_is_not_served() {
    let (c, stats) = cache(1 << 20, Duration::from_millis(30));
    c.fill(&key(1), session(1, 10)).await;
    assert!(c.get(&key(1), 0).await.is_some());
    std::thread::sleep(Duration::from_millis(40));
    assert!(c.get(&key(1), 0).await.is_none());
    assert_eq!(c.size(), (0, 0), "dropped when found expired");
    assert_eq!(stats.cache_evictions.load(Relaxed), 1);
    // An expired floor no longer refuses a fill.
    c.invalidate(&key(2), 9).await;
    std::thread::sleep(Duration::from_millis(40));
    c.fill(&key(2), session(3, 10)).await;
    assert_eq!(c.get(&key(2), 0).await.map(|s| s.version), Some(3));
}

#[tokio::test]
async fn floors_refuse_older_fills_and_give_way_to_newer_ones() {
    let (c, stats) = cache(1 << 20, Duration::from_secs(60));
    c.fill(&key(1), session(5, 10)).await;
    c.invalidate(&key(1), 5).await;
    assert_eq!(
        c.get(&key(1), 0).await.map(|s| s.version),
        Some(5),
        "it knew"
    );
    c.invalidate(&key(1), 6).await;
    assert!(c.get(&key(1), 0).await.is_none());
    c.fill(&key(1), session(5, 10)).await;
    assert!(c.get(&key(1), 0).await.is_none(), "older than the floor");
    c.fill(&key(1), session(6, 10)).await;
    assert_eq!(c.get(&key(1), 0).await.map(|s| s.version), Some(6));
    assert!(c.get(&key(1), 7).await.is_none(), "below min_version");
    c.fill(&key(1), session(4, 10)).await;
    assert_eq!(c.get(&key(1), 0).await.map(|s| s.version), Some(6));
    assert_eq!(stats.cache_hits.load(Relaxed), 3);
    assert_eq!(stats.cache_misses.load(Relaxed), 3);
}

#[tokio::test]
async fn clear_drops_everything_and_its_charge() {
    let (c, _) = cache(1 << 20, Duration::from_secs(60));
    for i in 0..500 {
        c.fill(&key(i), session(1, 100)).await;
        c.invalidate(&key(i + 1000), 3).await;
    }
    assert_eq!(c.size().0, 1000);
    c.clear();
    assert_eq!(c.size(), (0, 0));
    assert!(c.get(&key(1), 0).await.is_none());
    c.fill(&key(1000), session(1, 100)).await;
    assert!(c.get(&key(1000), 0).await.is_some(), "its floor went too");
}

#[tokio::test]
async fn off_holds_nothing() {
    let (c, _) = cache(1 << 20, Duration::ZERO);
    c.fill(&key(1), session(1, 10)).await;
    assert!(!c.enabled());
    assert!(c.get(&key(1), 0).await.is_none());
    assert_eq!(c.size(), (0, 0));
}
