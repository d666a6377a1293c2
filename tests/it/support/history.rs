//! A record of every operation a fault test's clients made and what came of
//! it, and the checks of that history against the contract.
//!
//! The workload is the bot's turn: LockSession (waiting), read the counter
//! `n` from the grant, UpdateSession `n + 1` with the token and
//! `release_lock`. Under mutual exclusion every write that lands adds one,
//! so the final counter is the number of writes that landed: at least the
//! acknowledged ones, at most those plus the ones whose outcome the client
//! could not know (a timeout, a connection lost mid-call).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sessiond::pb::*;
use tonic::Code;

use super::{Client, counter_of, set};

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged, at this version.
    Acked(u64),
    /// Refused: nothing was written.
    Refused,
    /// Unknown: it may or may not have landed.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct Write {
    pub session: String,
    /// The fencing token of the grant the write was made under.
    pub fence: u64,
    /// When the grant reached the client: its lease ended no later than
    /// this plus the lease.
    pub granted: Instant,
    /// The counter value written.
    pub n: u64,
    pub sent: Instant,
    pub done: Instant,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct Grant {
    pub session: String,
    pub fence: u64,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct Read {
    pub session: String,
    pub version: u64,
    pub sent: Instant,
}

#[derive(Default)]
struct Log {
    writes: Vec<Write>,
    grants: Vec<Grant>,
    reads: Vec<Read>,
}

/// Shared by every client of a run.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<Log>>);

/// How a turn is made: its lease and wait, and where the client gives up
/// (drops the call, which resets its stream) to play a caller that goes away.
#[derive(Debug, Clone, Copy)]
pub struct Turn {
    pub lease_ms: u32,
    pub wait_ms: u32,
    pub cancel_lock_after: Option<Duration>,
    pub cancel_write_after: Option<Duration>,
}

impl Turn {
    pub fn new(lease_ms: u32, wait_ms: u32) -> Turn {
        Turn {
            lease_ms,
            wait_ms,
            cancel_lock_after: None,
            cancel_write_after: None,
        }
    }
}

/// `call`, dropped after `after` if it has not finished (`None`: never).
async fn within<T>(after: Option<Duration>, call: impl Future<Output = T>) -> Option<T> {
    match after {
        Some(d) => tokio::time::timeout(d, call).await.ok(),
        None => Some(call.await),
    }
}

/// Whether a failed write is known to have written nothing.
fn refused(s: &tonic::Status) -> bool {
    match s.code() {
        Code::FailedPrecondition
        | Code::Aborted
        | Code::InvalidArgument
        | Code::NotFound
        | Code::ResourceExhausted
        | Code::Unauthenticated
        | Code::PermissionDenied => true,
        // SHUTTING_DOWN: refused before it started.
        Code::Unavailable => super::reason(Err::<(), _>(s.clone())).1 == "SHUTTING_DOWN",
        _ => false,
    }
}

impl History {
    /// One turn on `id`: lock, write `n + 1` with the token and
    /// `release_lock`. Returns false when no lock was granted.
    pub async fn turn(&self, c: &mut Client, id: &str, t: Turn) -> bool {
        let lock = c.lock_session(LockSessionRequest {
            session_id: id.into(),
            lease_ms: t.lease_ms,
            wait_ms: t.wait_ms,
            rate_limit: None,
            ..Default::default()
        });
        let Some(Ok(g)) = within(t.cancel_lock_after, lock).await else {
            return false;
        };
        let g = g.into_inner();
        let granted = Instant::now();
        self.0.lock().grants.push(Grant {
            session: id.into(),
            fence: g.fencing_token,
            at: granted,
        });
        let n = counter_of(g.session.as_ref()) + 1;
        let mut w = set(id, &[("n", &n.to_string())]);
        w.lock_token = g.lock_token.clone();
        w.release_lock = true;
        let sent = Instant::now();
        let outcome = match within(t.cancel_write_after, c.update_session(w)).await {
            Some(Ok(r)) => Outcome::Acked(r.into_inner().version),
            Some(Err(s)) if refused(&s) => Outcome::Refused,
            Some(Err(_)) | None => Outcome::Unknown,
        };
        if outcome == Outcome::Unknown {
            // Best effort; the lease ends it anyway.
            let _ = c
                .unlock_session(UnlockSessionRequest {
                    session_id: id.into(),
                    lock_token: g.lock_token,
                })
                .await;
        }
        self.0.lock().writes.push(Write {
            session: id.into(),
            fence: g.fencing_token,
            granted,
            n,
            sent,
            done: Instant::now(),
            outcome,
        });
        true
    }

    /// A STRONG read, recorded when it succeeds.
    pub async fn read(&self, c: &mut Client, id: &str) {
        let sent = Instant::now();
        let got = c
            .get_session(GetSessionRequest {
                session_id: id.into(),
                consistency: Consistency::Strong as i32,
                min_version: 0,
            })
            .await;
        if let Ok(r) = got
            && let Some(s) = r.into_inner().session
        {
            self.0.lock().reads.push(Read {
                session: id.into(),
                version: s.version,
                sent,
            });
        }
    }

    /// Writes on `id` sent within `from..to` whose outcome is unknown.
    pub fn unknown_between(&self, id: &str, from: Instant, to: Instant) -> u64 {
        let log = self.0.lock();
        log.writes
            .iter()
            .filter(|w| w.session == id && w.outcome == Outcome::Unknown)
            .filter(|w| w.sent >= from && w.sent < to)
            .count() as u64
    }

    /// (acknowledged, unknown) writes on `id`.
    pub fn counts(&self, id: &str) -> (u64, u64) {
        let log = self.0.lock();
        let of = |o: fn(&Outcome) -> bool| {
            log.writes
                .iter()
                .filter(|w| w.session == id && o(&w.outcome))
                .count() as u64
        };
        (
            of(|o| matches!(o, Outcome::Acked(_))),
            of(|o| *o == Outcome::Unknown),
        )
    }

    /// Panics if a write was acknowledged though it was sent after its
    /// grant's lease had certainly ended (the client saw the grant after the
    /// store made it, so the store's lease ended before `granted + lease`).
    pub fn check_leases(&self, lease: Duration) {
        let log = self.0.lock();
        for w in &log.writes {
            if let Outcome::Acked(v) = w.outcome {
                assert!(
                    w.sent <= w.granted + lease,
                    "{}: v{v} was accepted from a holder whose lease had ended {:?} before it sent it",
                    w.session,
                    w.sent - (w.granted + lease)
                );
            }
        }
    }

    /// The highest version acknowledged on `id` (0: none).
    pub fn highest_acked_version(&self, id: &str) -> u64 {
        let log = self.0.lock();
        log.writes
            .iter()
            .filter(|w| w.session == id)
            .filter_map(|w| match w.outcome {
                Outcome::Acked(v) => Some(v),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    pub fn grants(&self, id: &str) -> Vec<Grant> {
        let log = self.0.lock();
        log.grants
            .iter()
            .filter(|g| g.session == id)
            .cloned()
            .collect()
    }

    /// Checks the history of `id` against the contract, given the session
    /// as a STRONG read finds it at the end (`None`: absent). Panics with
    /// what broke.
    pub fn check(&self, id: &str, end: Option<&Session>) {
        let log = self.0.lock();
        let mut acked: Vec<(u64, &Write)> = log
            .writes
            .iter()
            .filter(|w| w.session == id)
            .filter_map(|w| match w.outcome {
                Outcome::Acked(v) => Some((v, w)),
                _ => None,
            })
            .collect();
        acked.sort_by_key(|(v, _)| *v);
        // Versions are never given twice.
        for pair in acked.windows(2) {
            let [(v1, w1), (v2, w2)] = pair else { continue };
            assert!(v1 < v2, "{id}: version {v1} acknowledged twice");
            // No stale holder's write lands after a newer holder's: in
            // version order, fences only grow (one write per grant).
            assert!(
                w1.fence < w2.fence,
                "{id}: v{v1} under fence {} came before v{v2} under fence {}",
                w1.fence,
                w2.fence
            );
            // Each holder read the latest value: the counter only grows.
            assert!(
                w1.n < w2.n,
                "{id}: v{v1} wrote {} and v{v2} wrote {}",
                w1.n,
                w2.n
            );
        }
        // Every fence is given to one holder only.
        let mut fences: Vec<u64> = log
            .grants
            .iter()
            .filter(|g| g.session == id)
            .map(|g| g.fence)
            .collect();
        fences.sort_unstable();
        for pair in fences.windows(2) {
            assert!(pair[0] < pair[1], "{id}: fence {} granted twice", pair[0]);
        }
        // Real time: a STRONG read sent after a write was acknowledged sees
        // that write (or a later one).
        for r in log.reads.iter().filter(|r| r.session == id) {
            if let Some((v, _)) = acked.iter().rev().find(|(_, w)| w.done < r.sent) {
                assert!(
                    r.version >= *v,
                    "{id}: a STRONG read sent after v{v} was acknowledged returned v{}",
                    r.version
                );
            }
        }
        // No acknowledged write lost; nothing counted that never landed.
        let (n_acked, unknown) = (acked.len() as u64, {
            log.writes
                .iter()
                .filter(|w| w.session == id && w.outcome == Outcome::Unknown)
                .count() as u64
        });
        let n = counter_of(end);
        assert!(
            n >= n_acked && n <= n_acked + unknown,
            "{id}: the counter is {n}, with {n_acked} writes acknowledged and {unknown} unknown"
        );
        if let Some((v, _)) = acked.last() {
            let version = end.map_or(0, |s| s.version);
            assert!(
                version >= *v,
                "{id}: v{v} was acknowledged, the session is at v{version}"
            );
        }
    }
}

/// The session `id` as a STRONG read finds it, retrying while the server
/// comes back (up to `within`).
pub async fn final_state(c: &mut Client, id: &str, within: Duration) -> Option<Session> {
    let deadline = Instant::now() + within;
    loop {
        let got = c
            .get_session(GetSessionRequest {
                session_id: id.into(),
                consistency: Consistency::Strong as i32,
                min_version: 0,
            })
            .await;
        match got {
            Ok(r) => return r.into_inner().session,
            Err(s) if s.code() == Code::NotFound => return None,
            Err(s) if Instant::now() > deadline => panic!("{id}: no final read: {s:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
