//! `--memory`: what cached sessions cost sessiond. Fills `--sessions`
//! sessions of `--value-bytes` through the server (an UpdateSession, then a
//! CACHED GetSession that caches it), reads the server's resident memory
//! from `/proc` before and after, with the cache's own figures (GetStats),
//! then runs CACHED reads over all of them and over the first 1,000 in
//! turn, `--rounds` times, so the two throughputs are compared within one
//! run on a machine whose speed drifts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiond::pb::GetStatsRequest;
use sessiond::pb::admin_service_client::AdminServiceClient;

use super::workloads::{Run, closed_loop, prepare, report};
use super::{Args, Chan, print_json, rss_mib};

/// The small set the full one is compared with.
const FEW: usize = 1000;

/// How long the server gets to settle after the fill (its caches' own
/// housekeeping, the allocator returning pages) before memory is read.
const SETTLE: Duration = Duration::from_secs(3);

pub(crate) async fn measure(args: &Args, chans: &[Chan]) -> anyhow::Result<()> {
    let first = chans
        .first()
        .ok_or_else(|| anyhow::anyhow!("no connection to drive"))?;
    let pid = args
        .server_pid
        .ok_or_else(|| anyhow::anyhow!("--memory needs --server-pid"))?;
    let rss = || rss_mib(pid).ok_or_else(|| anyhow::anyhow!("no /proc/{pid}/status"));
    let mut admin = AdminServiceClient::new(first.clone());
    let rss_before = rss()?;
    let prefix = format!("bench-memory-{}", uuid::Uuid::new_v4().simple());
    let started = Instant::now();
    prepare(
        &Arc::new(Run::new(prefix.clone(), args.sessions, args.value_bytes)),
        first,
    )
    .await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let rss_filled = rss()?;
    let cache = admin
        .get_stats(GetStatsRequest::default())
        .await?
        .into_inner()
        .cache
        .unwrap_or_default();
    let per_session = (rss_filled - rss_before) * 1024.0 * 1024.0 / args.sessions.max(1) as f64;
    println!(
        "{{\"memory\":{{\"sessions\":{},\"value_bytes\":{},\"fill_seconds\":{fill_seconds:.1},\
         \"rss_mib_before\":{rss_before:.1},\"rss_mib_filled\":{rss_filled:.1},\
         \"bytes_per_session\":{per_session:.0},\"cache_entries\":{},\"cache_weighted_bytes\":{}}}}}",
        args.sessions, args.value_bytes, cache.entries, cache.weighted_bytes
    );
    let (mut all, mut few) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        for (n, out) in [
            (args.sessions, &mut all),
            (FEW.min(args.sessions), &mut few),
        ] {
            let run = Arc::new(Run::new(prefix.clone(), n, args.value_bytes));
            let before = admin.get_stats(GetStatsRequest::default()).await?;
            let started = Instant::now();
            closed_loop(args, "read-cached", chans, &run).await?;
            let seconds = started.elapsed().as_secs_f64();
            let after = admin.get_stats(GetStatsRequest::default()).await?;
            let misses = |r: &tonic::Response<sessiond::pb::GetStatsResponse>| {
                r.get_ref().cache.as_ref().map_or(0, |c| c.misses)
            };
            let check = format!(
                "{n} sessions, {} cache misses",
                misses(&after).saturating_sub(misses(&before))
            );
            let r = report(
                run,
                "read-cached",
                0.0,
                args.callers,
                chans.len(),
                seconds,
                Some(check),
            )?;
            out.push(r.ops as f64 / r.seconds);
            print_json(&r, None, Some(pid));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{{\"memory_result\":{{\"sessions\":{},\"rss_mib\":{:.1},\"read_cached_all\":{:.0},\
         \"read_cached_{FEW}\":{:.0},\"all_over_{FEW}\":{:.3}}}}}",
        args.sessions,
        rss()?,
        mean(&all),
        mean(&few),
        mean(&all) / mean(&few).max(1.0)
    );
    Ok(())
}
