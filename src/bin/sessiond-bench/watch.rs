//! The `watch` workload: `--callers` writers increment a few sessions
//! (UpdateSession with an increment op, no lock) while `--watchers`
//! WatchSession streams (100 by default, spread over the connections, so
//! over the instances of `--target`) watch them. Reports the writes (their
//! throughput and latency, as any workload) and the fan-out: the time from a
//! write's acknowledgement to each watcher's receipt of its event (0 when
//! the event came first), and whether every watcher saw every version.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sessiond::pb::session_service_client::SessionServiceClient;
use sessiond::pb::watch_session_response::Event;
use sessiond::pb::*;
use sessiond::stats::Histogram;
use tokio::sync::watch;

use super::workloads::{Rng, Run};
use super::{Args, Chan};

/// Sessions the watchers share (each has `--watchers` / this many).
pub(crate) const WATCHED_SESSIONS: usize = 10;

/// How long watchers may take, after the writers stop, to see the last
/// versions.
const DRAIN: Duration = Duration::from_secs(10);

/// What one watcher saw: (session, version, when) of each change.
struct Seen {
    session: usize,
    events: Vec<(u64, Instant)>,
    contiguous: bool,
}

/// Runs the workload on `run`'s (prepared) sessions; the report's extra
/// JSON members.
pub(crate) async fn drive(args: &Args, run: &Arc<Run>, chans: &[Chan]) -> anyhow::Result<String> {
    let sessions = run.sessions;
    let acks: Arc<Vec<Mutex<HashMap<u64, Instant>>>> =
        Arc::new((0..sessions).map(|_| Mutex::new(HashMap::new())).collect());
    let (finals_tx, finals) = watch::channel::<Option<Vec<u64>>>(None);
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<()>(args.watchers.max(1));
    let mut watchers = Vec::new();
    for (j, chan) in (0..args.watchers).zip(chans.iter().cycle()) {
        let k = j % sessions;
        let (id, chan, finals, ready) = (run.id(k), chan.clone(), finals.clone(), ready_tx.clone());
        watchers.push(tokio::spawn(watcher(k, id, chan, finals, ready)));
    }
    drop(ready_tx);
    for _ in 0..args.watchers {
        ready
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("a watcher never began"))?;
    }

    let mut writers = Vec::new();
    for (i, chan) in (0..args.callers).zip(chans.iter().cycle()) {
        let (run, acks, chan) = (run.clone(), acks.clone(), chan.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = Rng::of(i as u64);
            let mut c = SessionServiceClient::new(chan);
            while !run.stop.load(Relaxed) {
                let k = rng.below(run.sessions);
                let started = Instant::now();
                let req = UpdateSessionRequest {
                    session_id: run.id(k),
                    ops: vec![FieldOp {
                        field: "n".into(),
                        op: Some(field_op::Op::Increment(1)),
                    }],
                    ..Default::default()
                };
                match c.update_session(req).await {
                    Ok(r) => {
                        let at = Instant::now();
                        run.done(at - started);
                        run.ack(k);
                        if let Some(acked) = acks.get(k) {
                            acked.lock().insert(r.into_inner().version, at);
                        }
                    }
                    Err(s) => run.error(&s),
                }
            }
        }));
    }
    tokio::time::sleep(args.duration).await;
    run.stop.store(true, Relaxed);
    for w in writers {
        w.await?;
    }
    let last: Vec<u64> = acks
        .iter()
        .map(|a| a.lock().keys().copied().max().unwrap_or(0))
        .collect();
    finals_tx.send_replace(Some(last));

    let fanout = Histogram::default();
    let (mut events, mut gaps, mut ended) = (0u64, 0usize, 0usize);
    for w in watchers {
        match w.await? {
            Ok(seen) => {
                gaps += usize::from(!seen.contiguous);
                if let Some(acked) = acks.get(seen.session) {
                    let acked = acked.lock();
                    for (v, at) in &seen.events {
                        events += 1;
                        if let Some(ack) = acked.get(v) {
                            fanout.record_duration_us(at.saturating_duration_since(*ack));
                        }
                    }
                }
            }
            Err(status) => {
                ended += 1;
                run.error_named(&format!("watch {:?}", status.code()));
            }
        }
    }
    let f = fanout.summary();
    let check = if gaps == 0 && ended == 0 {
        format!("ok: {} watchers saw every version", args.watchers)
    } else {
        format!("GAPS: {gaps} watchers missed versions, {ended} ended")
    };
    Ok(format!(
        "\"watchers\":{},\"watched_sessions\":{sessions},\"events\":{events},\
         \"fanout_us\":{{\"p50\":{},\"p99\":{},\"max\":{}}},\"watch_check\":\"{check}\"",
        args.watchers, f.p50, f.p99, f.max
    ))
}

/// One watcher of session `k`: its snapshot, then every change until it has
/// seen the last version written (or `DRAIN` after the writers stopped).
async fn watcher(
    k: usize,
    id: String,
    chan: Chan,
    mut finals: watch::Receiver<Option<Vec<u64>>>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<Seen, tonic::Status> {
    let mut c = SessionServiceClient::new(chan);
    let mut stream = c
        .watch_session(WatchSessionRequest {
            session_id: id,
            after_version: 0,
            include_values: false,
        })
        .await?
        .into_inner();
    let first = stream.message().await?;
    let mut last = first.map_or(0, |m| m.version);
    let _ = ready.send(()).await;
    let mut seen = Seen {
        session: k,
        events: Vec::new(),
        contiguous: true,
    };
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let target = finals.borrow().as_ref().and_then(|f| f.get(k).copied());
        if let Some(target) = target {
            if last >= target {
                return Ok(seen);
            }
            deadline.get_or_insert_with(|| tokio::time::Instant::now() + DRAIN);
        }
        let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + DRAIN * 100);
        tokio::select! {
            m = stream.message() => match m? {
                Some(WatchSessionResponse { version, event: Some(Event::Changed(_)) }) => {
                    seen.contiguous &= version == last + 1;
                    last = version;
                    seen.events.push((version, Instant::now()));
                }
                Some(_) => {}
                None => return Err(tonic::Status::unavailable("the watch ended")),
            },
            _ = finals.changed() => {}
            () = tokio::time::sleep_until(until) => {
                seen.contiguous = false;
                return Ok(seen);
            }
        }
    }
}
