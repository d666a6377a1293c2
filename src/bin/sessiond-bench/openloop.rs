//! Open-loop load (`--rate`): requests go out on a fixed schedule whether or
//! not earlier ones have finished, and each one's latency is measured from
//! the time it was due, not from when it was sent. A closed loop hides a
//! stall (its callers wait, so fewer requests see it: coordinated omission);
//! here every request due during a stall waits for it, and the percentiles
//! show it. Each report also gives how late requests went out
//! (`send_lag_us`: from the time due to the start of the task that sends
//! it), which the latencies include; the empty RPC run the same way shows
//! the floor.
//!
//! The schedule is kept by a thread of its own, not by tokio's timer (whose
//! millisecond ticks sent requests in bursts, up to a millisecond late): it
//! sleeps until [`SPIN`] before a request is due, with its timer slack set
//! to 1 µs (the kernel's default lets a sleep end up to 50 µs late), spins
//! the rest, and hands the request to the runtime as a task. It spins only
//! briefly: on a machine whose cores are taken, a thread that spins uses up
//! its share and is descheduled for milliseconds, where one that sleeps is
//! run again soon after its wake-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::workloads::{Clients, Rng, Run, once};
use super::{Args, Chan};

/// Requests in flight beyond which a due request is not sent but counted as
/// `OPEN_LOOP_OVERFLOW` (the target has fallen hopelessly behind; memory
/// stays bounded).
const MAX_IN_FLIGHT: u64 = 20_000;

/// How long the requests still in flight at the end may take to finish.
const DRAIN: Duration = Duration::from_secs(30);

/// How long before a request is due the sender stops sleeping and spins.
const SPIN: Duration = Duration::from_micros(20);

/// The timer slack the sender asks for, in ns (`/proc/<tid>/timerslack_ns`).
const TIMER_SLACK_NS: &str = "1000";

/// Sends `args.rate` requests a second of `workload` for `args.duration`,
/// spread over the connections in turn.
pub(crate) async fn drive(
    args: &Args,
    workload: &str,
    chans: &[Chan],
    run: &Arc<Run>,
) -> anyhow::Result<()> {
    let clients: Vec<Clients> = chans.iter().cloned().map(Clients::new).collect();
    anyhow::ensure!(!clients.is_empty(), "no connection to drive");
    let schedule = Schedule {
        interval: Duration::from_secs_f64(1.0 / args.rate),
        duration: args.duration,
        clients,
        workload: workload.to_owned(),
        run: run.clone(),
        runtime: tokio::runtime::Handle::current(),
        nice: args.sender_nice,
    };
    let sender = std::thread::Builder::new()
        .name("open-loop-sender".into())
        .spawn(move || schedule.send());
    let sender = sender?;
    let mut tasks = tokio::task::spawn_blocking(move || sender.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the open-loop sender panicked"))??;
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

/// What the sender thread needs.
struct Schedule {
    interval: Duration,
    duration: Duration,
    clients: Vec<Clients>,
    workload: String,
    run: Arc<Run>,
    runtime: tokio::runtime::Handle,
    nice: Option<i32>,
}

type Tasks = JoinSet<anyhow::Result<()>>;

impl Schedule {
    /// Sends every request at its time; returns the tasks still running.
    fn send(self) -> anyhow::Result<Tasks> {
        if let Err(e) = precise_timer() {
            eprintln!(
                "open loop: timer slack left as it was ({e}): sleeps may end up to 50 µs late"
            );
        }
        if let Some(n) = self.nice
            && let Err(e) = renice(n)
        {
            eprintln!("open loop: the sender's nice value left as it was ({e})");
        }
        let in_flight = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let end = start + self.duration;
        let mut sent: u64 = 0;
        let mut next = start;
        let mut tasks = JoinSet::new();
        while next < end {
            wait_until(next);
            // Everything due by now goes out now (a request may come due
            // while the one before is handed over).
            let now = Instant::now();
            while next <= now && next < end {
                let due = next;
                self.run.handed_late(due.elapsed());
                sent += 1;
                next = start + self.interval.mul_f64(sent as f64);
                if in_flight.fetch_add(1, Relaxed) >= MAX_IN_FLIGHT {
                    in_flight.fetch_sub(1, Relaxed);
                    self.run.error_named("OPEN_LOOP_OVERFLOW");
                    continue;
                }
                let index = (sent as usize) % self.clients.len();
                let mut c = self
                    .clients
                    .get(index)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("no client"))?;
                let (run, in_flight) = (self.run.clone(), in_flight.clone());
                let workload = self.workload.clone();
                tasks.spawn_on(
                    async move {
                        run.sent_late(due.elapsed());
                        let mut rng = Rng::of(sent);
                        let answer = once(&workload, &mut rng, &mut c, &run).await;
                        in_flight.fetch_sub(1, Relaxed);
                        match answer? {
                            Ok(()) => run.done(due.elapsed()),
                            Err(s) => run.error(&s),
                        }
                        anyhow::Ok(())
                    },
                    &self.runtime,
                );
            }
            // Reap what has finished, so the set does not grow with the run.
            while let Some(done) = tasks.try_join_next() {
                done??;
            }
        }
        Ok(tasks)
    }
}

/// Sets the calling thread's timer slack to [`TIMER_SLACK_NS`] (Linux).
fn precise_timer() -> std::io::Result<()> {
    let me = std::fs::read_link("/proc/thread-self")?;
    let tid = me
        .file_name()
        .ok_or_else(|| std::io::Error::other("no thread id in /proc/thread-self"))?;
    let path = std::path::Path::new("/proc")
        .join(tid)
        .join("timerslack_ns");
    std::fs::write(path, TIMER_SLACK_NS)?;
    Ok(())
}

/// Gives the calling thread the nice value `n` (`renice`, which needs root
/// for a negative one): on a machine whose cores are busy with other work
/// the schedule then stays kept, instead of waiting milliseconds for a turn.
fn renice(n: i32) -> std::io::Result<()> {
    let me = std::fs::read_link("/proc/thread-self")?;
    let tid = me
        .file_name()
        .ok_or_else(|| std::io::Error::other("no thread id in /proc/thread-self"))?;
    let status = std::process::Command::new("renice")
        .args(["-n", &n.to_string(), "-p"])
        .arg(tid)
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("renice: {status}")))
    }
}

/// Sleeps until [`SPIN`] before `t`, then spins until `t`.
fn wait_until(t: Instant) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > SPIN {
            std::thread::sleep(left - SPIN);
        } else {
            std::hint::spin_loop();
        }
    }
}
