//! `render` against the golden text, on a `State` whose every figure differs.
use super::*;
use crate::cache::Cache;
use crate::config::{Config, Settings};
use crate::sessions::Sessions;
use crate::stats::Stats;
use crate::store::Store;

/// A `State` on a fresh embedded store whose counters all hold distinct
/// values, so a figure read from the wrong counter shows.
async fn state(dir: &std::path::Path) -> State {
    let mut config = Config::defaults();
    config.db_path = dir.join("metrics.redb");
    let settings = Settings::new(config).unwrap();
    let stats = Arc::new(Stats::default());
    let (store, _) = Store::open(&settings.store, settings.limits.clone(), stats.clone())
        .await
        .unwrap();
    let cache = Cache::new(
        settings.cache_max_bytes,
        settings.cache_max_age,
        stats.clone(),
    );
    let sessions = Sessions::new(store, cache, stats.clone(), crate::store::Coverage::Alone);
    let state = State::new(sessions, None, settings.limits, stats);
    let s = &state.stats;
    for (i, m) in Method::ALL.into_iter().enumerate() {
        let i = i as u64;
        let rpc = s.rpc(m);
        rpc.started.store(10 + i, Relaxed);
        rpc.codes[0].store(7 + i, Relaxed);
        rpc.codes[(i as usize * 3) % 17].fetch_add(2, Relaxed);
        rpc.codes[16 - i as usize].fetch_add(1, Relaxed);
        for us in [300, 900 * (i + 1), 40_000 * i, 2_000_000 + i] {
            rpc.latency_us.record(us);
        }
    }
    let counters = [
        &s.cache_hits,
        &s.cache_misses,
        &s.cache_evictions,
        &s.cache_invalidations,
        &s.cache_bypasses,
        &s.cache_feed_losses,
        &s.lock_acquisitions,
        &s.lock_contended,
        &s.lock_waits_granted,
        &s.lock_waits_abandoned,
        &s.lock_waiting_now,
        &s.lock_lease_expiries,
        &s.lock_stale_token,
        &s.lock_held_rejections,
        &s.store_errors,
        &s.durability_failures,
        &s.store_data_losses,
        &s.lock_forced_releases,
        &s.lock_superseded,
        &s.lock_replayed,
        &s.watchers,
        &s.watch_events,
        &s.watch_lagged,
    ];
    for (i, c) in counters.into_iter().enumerate() {
        c.store(101 + i as u64 * 3, Relaxed);
    }
    for (i, c) in s.quota_refusals.iter().enumerate() {
        c.store(61 + i as u64 * 5, Relaxed);
    }
    s.store_healthy.store(true, Relaxed);
    for ms in [2, 7, 40, 900, 4_000, 70_000] {
        s.lock_wait_ms.record(ms);
    }
    state
}

/// Today's exposition text, byte for byte: names, labels, HELP and TYPE
/// lines, order and number formatting are what scrapers and dashboards
/// depend on. The cache and pool gauges read zero here (an empty cache,
/// the embedded store); `metrics_move_with_calls` in the integration
/// tests reads the cache figures of a live server.
#[tokio::test]
async fn render_is_the_golden_text() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path()).await;
    let golden = include_str!("../../tests/it/golden/metrics.prom");
    let text = render(&state);
    for (i, (got, want)) in text.lines().zip(golden.lines()).enumerate() {
        assert_eq!(got, want, "line {}", i + 1);
    }
    assert_eq!(text, golden);
}
