//! Open-loop load (`--rate`): requests go out on a fixed schedule whether or
//! not earlier ones have finished, and each one's latency is measured from
//! the time it was due, not from when it was sent. A closed loop hides a
//! stall (its callers wait, so fewer requests see it: coordinated omission);
//! here every request due during a stall waits for it, and the percentiles
//! show it. Each report also gives how late requests went out
//! (`send_lag_us`: the timer's millisecond granularity and the scheduler),
//! which the latencies include; the empty RPC run the same way shows the
//! floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use super::Args;
use super::workloads::{Clients, Rng, Run, once};

/// Requests in flight beyond which a due request is not sent but counted as
/// `OPEN_LOOP_OVERFLOW` (the target has fallen hopelessly behind; memory
/// stays bounded).
const MAX_IN_FLIGHT: u64 = 20_000;

/// How long the requests still in flight at the end may take to finish.
const DRAIN: Duration = Duration::from_secs(30);

/// Sends `args.rate` requests a second of `workload` for `args.duration`,
/// spread over the connections in turn.
pub(crate) async fn drive(
    args: &Args,
    workload: &str,
    chans: &[Channel],
    run: &Arc<Run>,
) -> anyhow::Result<()> {
    let clients: Vec<Clients> = chans.iter().cloned().map(Clients::new).collect();
    anyhow::ensure!(!clients.is_empty(), "no connection to drive");
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let in_flight = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + args.duration;
    let mut sent: u64 = 0;
    let mut next = start;
    let mut tasks = tokio::task::JoinSet::new();
    while next < end {
        tokio::time::sleep_until(next).await;
        // Everything due by now goes out now: the timer's granularity is a
        // millisecond, the schedule's may be finer.
        let now = Instant::now();
        while next <= now && next < end {
            let due = next;
            sent += 1;
            next = start + interval.mul_f64(sent as f64);
            if in_flight.fetch_add(1, Relaxed) >= MAX_IN_FLIGHT {
                in_flight.fetch_sub(1, Relaxed);
                run.error_named("OPEN_LOOP_OVERFLOW");
                continue;
            }
            let index = (sent as usize) % clients.len();
            let mut c = clients
                .get(index)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no client"))?;
            let (run, in_flight, workload) = (run.clone(), in_flight.clone(), workload.to_owned());
            tasks.spawn(async move {
                run.sent_late(due.elapsed());
                let mut rng = Rng::of(sent);
                let answer = once(&workload, &mut rng, &mut c, &run).await;
                in_flight.fetch_sub(1, Relaxed);
                match answer? {
                    Ok(()) => run.done(due.elapsed()),
                    Err(s) => run.error(&s),
                }
                anyhow::Ok(())
            });
        }
        // Reap what has finished, so the set does not grow with the run.
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    run.stop.store(true, Relaxed);
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })
    .await;
    match drained {
        Ok(result) => result,
        Err(_) => {
            run.error_named("OPEN_LOOP_UNFINISHED");
            Ok(())
        }
    }
}
