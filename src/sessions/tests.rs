//! The cache rules, on a real embedded store and no server. A write made
//! through `store()` stands for another instance's write: the cache hears
//! of it only through `on_feed`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use tempfile::TempDir;

use super::*;
use crate::config::{Config, Settings};
use crate::store::embedded::EmbeddedStore;

struct Fixture {
    sessions: Sessions,
    stats: Arc<Stats>,
    _dir: TempDir,
}

fn fixture(coverage: Coverage) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Stats::default());
    let limits = Settings::new(Config::defaults()).unwrap().limits;
    let store = EmbeddedStore::open(&dir.path().join("t.redb"), limits, stats.clone()).unwrap();
    let cache = Cache::new(1 << 20, Duration::from_secs(60), stats.clone());
    Fixture {
        sessions: Sessions::new(Store::Embedded(store), cache, stats.clone(), coverage),
        stats,
        _dir: dir,
    }
}

fn key() -> SessionKey {
    SessionKey::new("default", "user-1").unwrap()
}

fn set(name: &str, value: &str) -> Mutation {
    Mutation {
        set: vec![(name.to_owned(), Bytes::from(value.to_owned()))],
        ..Default::default()
    }
}

impl Fixture {
    async fn write(&self, value: &str) -> u64 {
        let w = self
            .sessions
            .update(&key(), set("a", value), Guards::default())
            .await;
        w.unwrap().version
    }

    /// A write the cache does not hear of (another instance's).
    async fn write_elsewhere(&self, value: &str) -> u64 {
        let store = self.sessions.store();
        let w = store
            .update(&key(), set("a", value), Guards::default())
            .await;
        w.unwrap().version
    }

    async fn cached(&self, min_version: u64) -> Result<Read> {
        self.sessions
            .get(&key(), Consistency::Cached, min_version)
            .await
    }

    /// (version, from_cache) of a CACHED read.
    async fn look(&self) -> (u64, bool) {
        let r = self.cached(0).await.unwrap();
        (r.session.version, r.from_cache)
    }

    async fn read_store(&self) -> Arc<Session> {
        Arc::new(self.sessions.store().get(&key()).await.unwrap().unwrap())
    }
}

#[tokio::test]
async fn a_cached_read_fills_the_cache_and_the_next_one_hits() {
    let f = fixture(Coverage::Alone);
    f.write("1").await;
    assert_eq!(f.look().await, (1, false));
    assert_eq!(f.look().await, (1, true));
}

#[tokio::test]
async fn strong_reads_never_come_from_the_cache() {
    let f = fixture(Coverage::Alone);
    f.write("1").await;
    f.look().await;
    let r = f
        .sessions
        .get(&key(), Consistency::Strong, 0)
        .await
        .unwrap();
    assert!(!r.from_cache);
}

#[tokio::test]
async fn min_version_above_the_cached_copy_goes_to_the_store() {
    let f = fixture(Coverage::Alone);
    f.write("1").await;
    f.look().await;
    f.write_elsewhere("2").await;
    assert_eq!(f.look().await, (1, true), "the cache did not hear of v2");
    let r = f.cached(2).await.unwrap();
    assert_eq!((r.session.version, r.from_cache), (2, false));
}

#[tokio::test]
async fn an_invalidation_from_the_feed_drops_older_copies() {
    let f = fixture(Coverage::Alone);
    f.write("1").await;
    f.look().await;
    let v = f.write_elsewhere("2").await;
    f.sessions.on_feed(FeedEvent::Invalidate(key(), v)).await;
    assert_eq!(f.look().await, (2, false));
    assert_eq!(f.look().await, (2, true));
    assert_eq!(f.stats.cache_invalidations.load(Relaxed), 1);
}

#[tokio::test]
async fn a_fill_older_than_a_write_is_refused() {
    let f = fixture(Coverage::Alone);
    f.write("1").await;
    let epoch = f.sessions.epoch.load(SeqCst);
    let slow = f.read_store().await; // a read of v1 that lands late
    f.write("2").await;
    f.sessions.fill(&key(), slow, epoch).await;
    assert_eq!(f.look().await, (2, false), "v1 must not have been cached");
}

#[tokio::test]
async fn a_fill_of_the_version_a_delete_removed_is_refused() {
    let f = fixture(Coverage::Alone);
    f.write("1").await;
    let epoch = f.sessions.epoch.load(SeqCst);
    let slow = f.read_store().await;
    assert!(f.sessions.delete(&key(), Guards::default()).await.unwrap());
    // The floor is version + 1: a floor of the deleted version itself would
    // let this late fill bring the deleted session back.
    f.sessions.fill(&key(), slow, epoch).await;
    assert!(matches!(f.cached(0).await, Err(Error::NotFound)));
    // A re-created session is cached as usual.
    assert_eq!(f.write("3").await, 2);
    assert_eq!(f.look().await, (2, false));
    assert_eq!(f.look().await, (2, true));
}

#[tokio::test]
async fn a_shared_store_is_not_cached_until_its_feed_is_up() {
    let f = fixture(Coverage::Whole);
    f.write("1").await;
    assert_eq!(f.look().await, (1, false));
    assert_eq!(f.look().await, (1, false));
    assert_eq!(f.stats.cache_bypasses.load(Relaxed), 2);
    assert!(!f.sessions.feed_healthy());
    f.sessions.on_feed(FeedEvent::Up).await;
    assert!(f.sessions.feed_healthy());
    assert_eq!(f.look().await, (1, false));
    assert_eq!(f.look().await, (1, true));
}

#[tokio::test]
async fn a_feed_loss_stops_cached_answers_and_drops_the_cache() {
    let f = fixture(Coverage::Whole);
    f.sessions.on_feed(FeedEvent::Up).await;
    f.write("1").await;
    f.look().await;
    assert_eq!(f.look().await, (1, true));
    f.sessions.on_feed(FeedEvent::Down).await;
    f.write_elsewhere("2").await; // its invalidation is lost with the feed
    assert_eq!(f.look().await, (2, false));
    assert_eq!(f.stats.cache_bypasses.load(Relaxed), 1);
    assert_eq!(f.stats.cache_feed_losses.load(Relaxed), 1);
    f.sessions.on_feed(FeedEvent::Up).await;
    // Nothing from before the loss survived it.
    assert_eq!(f.look().await, (2, false));
    assert_eq!(f.look().await, (2, true));
}

#[tokio::test]
async fn a_read_begun_before_the_feed_flapped_does_not_fill() {
    let f = fixture(Coverage::Whole);
    f.sessions.on_feed(FeedEvent::Up).await;
    f.write("1").await;
    let epoch = f.sessions.epoch.load(SeqCst);
    let read = f.read_store().await;
    f.sessions.on_feed(FeedEvent::Down).await;
    f.sessions.on_feed(FeedEvent::Up).await;
    f.sessions.fill(&key(), read, epoch).await;
    assert_eq!(f.look().await, (1, false));
}

#[tokio::test]
async fn a_shards_feed_loss_stops_cached_answers_of_its_slots_only() {
    let f = fixture(Coverage::Slots);
    let here = store::slot_of(&key());
    let other = (1..100)
        .map(|n| SessionKey::new("default", &format!("other-{n}")).unwrap())
        .find(|k| store::slot_of(k) != here)
        .unwrap();
    let look_other = async || {
        let r = f
            .sessions
            .get(&other, Consistency::Cached, 0)
            .await
            .unwrap();
        r.from_cache
    };
    f.write("1").await;
    let store = f.sessions.store();
    store
        .update(&other, set("a", "1"), Guards::default())
        .await
        .unwrap();
    // The whole feed up is not enough: no shard has said it is subscribed.
    f.sessions.on_feed(FeedEvent::Up).await;
    assert!(!f.sessions.feed_healthy());
    assert_eq!(f.look().await, (1, false));
    assert_eq!(f.look().await, (1, false));
    f.sessions
        .on_feed(FeedEvent::Slots {
            up: true,
            ranges: vec![(0, 16383)],
        })
        .await;
    assert!(f.sessions.feed_healthy());
    f.look().await;
    assert_eq!(f.look().await, (1, true));
    assert!(!look_other().await);
    assert!(look_other().await);
    // The shard of `key` loses its feed: its sessions go to the store, the
    // other shards' are still cached (once read again: the cache was
    // dropped whole).
    f.sessions
        .on_feed(FeedEvent::Slots {
            up: false,
            ranges: vec![(here, here)],
        })
        .await;
    assert!(!f.sessions.feed_healthy());
    f.write_elsewhere("2").await; // its invalidation is lost with the shard's feed
    assert_eq!(f.look().await, (2, false));
    assert_eq!(f.look().await, (2, false));
    assert!(!look_other().await);
    assert!(look_other().await);
    assert_eq!(f.stats.cache_feed_losses.load(Relaxed), 1);
    f.sessions
        .on_feed(FeedEvent::Slots {
            up: true,
            ranges: vec![(here, here)],
        })
        .await;
    assert_eq!(f.look().await, (2, false));
    assert_eq!(f.look().await, (2, true));
}

#[tokio::test]
async fn strong_reads_are_not_bypasses() {
    let f = fixture(Coverage::Whole);
    f.write("1").await;
    f.sessions
        .get(&key(), Consistency::Strong, 0)
        .await
        .unwrap();
    assert_eq!(f.stats.cache_bypasses.load(Relaxed), 0);
}

#[tokio::test]
async fn a_min_version_the_store_does_not_have_is_refused_not_answered_older() {
    let f = fixture(Coverage::Alone);
    f.write("1").await;
    for consistency in [Consistency::Cached, Consistency::Strong] {
        match f.sessions.get(&key(), consistency, 5).await {
            Err(Error::VersionLost {
                seen: 5,
                current: 1,
            }) => {}
            other => panic!("{consistency:?}: {other:?}"),
        }
    }
    // What the caller has seen is there: answered as usual.
    let r = f
        .sessions
        .get(&key(), Consistency::Strong, 1)
        .await
        .unwrap();
    assert_eq!(r.session.version, 1);
}
