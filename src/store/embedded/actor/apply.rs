//! How the actor applies one command inside its batch's transaction, and
//! the lock steps commands share: grant, release, hand over, and the sweep.
//! Checks come before writes, so a refused command writes nothing; `Err` is
//! only for faults, which fail the batch.

use std::time::{Duration, Instant};

use redb::WriteTransaction;

use super::command::{self, Answer, Command, Reply};
use super::{Actor, quota};
use crate::session::{Gcra, Guards, Holder, Idempotency, Inspection, LockGrant, Written};
use crate::store::embedded::locks::{Held, Waiter};
use crate::store::embedded::outcome::{Fault, Outcome, Refusal};
use crate::store::embedded::tables::{self, Earlier};
use crate::store::{now_ms, now_us};
use crate::watch::Logged;

impl Actor {
    /// Applies one command.
    pub(super) fn apply(
        &mut self,
        txn: &WriteTransaction,
        cmd: Command,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        let now = Instant::now();
        match cmd {
            Command::TryLock {
                key,
                token,
                lease,
                idem,
                reply,
            } => {
                let Some(reply) = self.replay(txn, &key, idem.as_ref(), now, reply, out)? else {
                    return Ok(());
                };
                let outcome = if self.locks.is_free(&key, now) {
                    match self.grant(txn, &key, token, lease, now).and_then(|grant| {
                        self.record_grant(txn, &key, idem.as_ref(), &grant, out)?;
                        Ok(grant)
                    }) {
                        Ok(grant) => Outcome::Done(grant),
                        Err(fault) => return Err(answered(reply, fault)),
                    }
                } else {
                    Outcome::Refused(Refusal::LockHeld)
                };
                out.push(Answer::Granted(reply, outcome));
            }
            Command::QueueLock {
                key,
                token,
                lease,
                turn,
                idem,
                reply,
            } => {
                let Some(reply) = self.replay(txn, &key, idem.as_ref(), now, reply, out)? else {
                    return Ok(());
                };
                // A DEBOUNCE waiter waits out its quiet period even for a
                // free lock.
                let debounce = turn.debounce();
                if debounce.is_zero() && self.locks.is_free(&key, now) {
                    match self.grant(txn, &key, token, lease, now).and_then(|grant| {
                        self.record_grant(txn, &key, idem.as_ref(), &grant, out)?;
                        Ok(grant)
                    }) {
                        Ok(grant) => out.push(Answer::Granted(reply, Outcome::Done(grant))),
                        Err(fault) => return Err(answered(reply, fault)),
                    }
                    return Ok(());
                }
                let waiter = Waiter {
                    token,
                    lease,
                    since: now,
                    reply,
                    idem,
                };
                if !turn.joins_burst() {
                    self.locks.enqueue(key, waiter);
                    return Ok(());
                }
                let max_chain = self.limits.max_turn_chain_bytes();
                let superseded = self.locks.join_burst(
                    key.clone(),
                    waiter,
                    debounce,
                    turn.payload,
                    max_chain,
                    now,
                );
                if let Some(old) = superseded {
                    out.push(Answer::Superseded(old.reply));
                }
                // It may stand first in line of a free lock (in the place of
                // a debouncing waiter it superseded).
                self.hand_over(txn, &key, now, out)?;
            }
            Command::Abandon { key, token } => {
                self.locks.abandon(&key, &token);
                self.hand_over(txn, &key, now, out)?;
            }
            Command::Update { key, m, g, reply } => {
                let earlier = match self.earlier(txn, &key, &g, now) {
                    Ok(earlier) => earlier,
                    Err(fault) => return Err(answered(reply, fault)),
                };
                if let Some((earlier, release)) = earlier {
                    out.push(Answer::Written(reply, earlier.map(|(w, _)| w)));
                    if release {
                        self.release(txn, &key, now, out)?;
                    }
                    return Ok(());
                }
                let outcome = match self.locks.check(&key, g.lock_token.as_deref(), now) {
                    Err(r) => Outcome::Refused(r),
                    Ok(held) => {
                        let now_ms = now_ms();
                        let created = match self.creates(txn, &key, now_ms) {
                            Ok(created) => created,
                            Err(fault) => return Err(answered(reply, fault)),
                        };
                        let written =
                            self.write(txn, &key, &m, &g, now_ms, held)
                                .and_then(|outcome| {
                                    if let Outcome::Done(w) = &outcome {
                                        self.remember(txn, &key, &g, now_ms, Some(w), None)?;
                                    }
                                    Ok(outcome)
                                });
                        match written {
                            Ok(outcome) => {
                                if let (Outcome::Done(w), Some(_)) = (&outcome, held) {
                                    self.locks.saw(&key, w.version);
                                }
                                if let (Outcome::Done(w), Some(created)) = (&outcome, created) {
                                    self.note_change(&key, &m, w, created);
                                }
                                outcome
                            }
                            Err(fault) => return Err(answered(reply, fault)),
                        }
                    }
                };
                let release = ends_lock(&outcome, g.release_lock);
                out.push(Answer::Written(reply, outcome));
                if release {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Delete { key, g, reply } => {
                let earlier = match self.earlier(txn, &key, &g, now) {
                    Ok(earlier) => earlier,
                    Err(fault) => return Err(answered(reply, fault)),
                };
                if let Some((earlier, release)) = earlier {
                    out.push(Answer::Deleted(reply, earlier.map(|(_, d)| d)));
                    if release {
                        self.release(txn, &key, now, out)?;
                    }
                    return Ok(());
                }
                let outcome = match self.locks.check(&key, g.lock_token.as_deref(), now) {
                    Err(r) => Outcome::Refused(r),
                    Ok(held) => {
                        let now_ms = now_ms();
                        match self
                            .delete(txn, &key, &g, now_ms, held)
                            .and_then(|outcome| {
                                if let Outcome::Done(d) = &outcome {
                                    self.remember(txn, &key, &g, now_ms, None, *d)?;
                                }
                                Ok(outcome)
                            }) {
                            Ok(outcome) => {
                                if let (Outcome::Done(_), Some(_)) = (&outcome, held) {
                                    self.locks.saw(&key, 0);
                                }
                                if let Outcome::Done(Some(version)) = &outcome {
                                    self.note_delete(&key, *version);
                                }
                                outcome
                            }
                            Err(fault) => return Err(answered(reply, fault)),
                        }
                    }
                };
                let release = ends_lock(&outcome, g.release_lock);
                out.push(Answer::Deleted(reply, outcome));
                if release {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Unlock { key, token, reply } => {
                let outcome = Outcome::from(self.locks.check(&key, Some(&token), now).map(drop));
                let release = outcome.is_done();
                out.push(Answer::Unit(reply, outcome));
                if release {
                    self.release(txn, &key, now, out)?;
                }
            }
            Command::Refresh {
                key,
                token,
                lease,
                reply,
            } => {
                let now_ms = now_ms();
                let until = now_ms + lease.as_millis() as i64;
                let outcome = match self.locks.refresh(&key, &token, lease, now, until) {
                    Err(r) => Outcome::Refused(r),
                    // The session lives at least as long as the lease.
                    Ok(()) => match tables::keep_alive(txn, &key, now_ms, until) {
                        Ok(_) => Outcome::Done(until),
                        Err(fault) => return Err(answered(reply, fault)),
                    },
                };
                out.push(Answer::Refreshed(reply, outcome));
            }
            Command::Inspect { key, reply } => match self.inspect(txn, &key, now) {
                Ok(seen) => out.push(Answer::Inspected(reply, seen)),
                Err(fault) => return Err(answered(reply, fault)),
            },
            Command::ForceUnlock { key, reply } => match self.locks.force_release(&key, now) {
                None => out.push(Answer::Forced(reply, None)),
                Some(fence) => {
                    // Above the released holder's, whoever gets the lock next.
                    if let Err(fault) = tables::next_fence(txn, &key) {
                        return Err(answered(reply, fault));
                    }
                    if self.watched(&key) {
                        self.note(&key, Logged::Forced { fence });
                    }
                    out.push(Answer::Forced(reply, Some(fence)));
                    self.hand_over(txn, &key, now, out)?;
                }
            },
            Command::WatchBegin { key, notify, reply } => {
                match self.watch_begin(txn, &key, notify, now) {
                    Ok(begin) => out.push(Answer::Began(reply, begin)),
                    Err(fault) => return Err(answered(reply, fault)),
                }
            }
            Command::CheckRate { key, limit, reply } => {
                match tables::check_rate(txn, &key, &limit, now_us()) {
                    Ok(Gcra::Admit { admitted, .. }) => {
                        out.push(Answer::Rated(reply, Ok(admitted)))
                    }
                    Ok(Gcra::Refuse { retry_after_us, .. }) => {
                        out.push(Answer::Rated(reply, Err(limit.refused(retry_after_us))));
                    }
                    Err(fault) => return Err(answered(reply, fault)),
                }
            }
        }
        Ok(())
    }

    /// The answer of an earlier write under the same idempotency key, if
    /// any (checked before the guards: a repeat brings its own), and whether
    /// this repeat releases its lock (asked to, and its token holds it).
    #[allow(clippy::type_complexity)]
    fn earlier(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        g: &Guards,
        now: Instant,
    ) -> Result<Option<(Outcome<(Written, Option<u64>)>, bool)>, Fault> {
        let Some(idem) = &g.idempotency else {
            return Ok(None);
        };
        let outcome = match tables::earlier(txn, key, idem, now_ms())? {
            None => return Ok(None),
            Some(Earlier::Other) => Outcome::Refused(Refusal::Limit(idem.reused())),
            Some(Earlier::Same { written, deleted }) => Outcome::Done((written, deleted)),
        };
        let release = outcome.is_done()
            && g.release_lock
            && self
                .locks
                .check(key, g.lock_token.as_deref(), now)
                .is_ok_and(|held| held.is_some());
        Ok(Some((outcome, release)))
    }

    /// Records a write's answer under its idempotency key, if it has one,
    /// for the window (in the write's own transaction).
    fn remember(
        &self,
        txn: &WriteTransaction,
        key: &[u8],
        g: &Guards,
        now_ms: i64,
        written: Option<&Written>,
        deleted: Option<u64>,
    ) -> Result<(), Fault> {
        let Some(idem) = &g.idempotency else {
            return Ok(());
        };
        let until = now_ms + self.limits.idempotency_window.as_millis() as i64;
        tables::remember(txn, key, idem, until, written, deleted)
    }

    /// The session as this transaction sees it, and its lock.
    fn inspect(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
    ) -> Result<Inspection, Fault> {
        let session = tables::read_session(&txn.open_table(tables::SESSIONS)?, key, now_ms())?;
        let view = self.locks.view(key, now);
        Ok(Inspection {
            session,
            holder: view.holder.map(|(fence, until_ms, since_ms)| Holder {
                fence,
                lease_expires_ms: until_ms,
                since_ms,
                instance: None,
            }),
            waiters: view.waiters,
            oldest_wait_ms: view
                .oldest
                .map_or(0, |t| now.saturating_duration_since(t).as_millis() as u64),
        })
    }

    /// Makes `token` the holder: takes the next fencing token (durably, in
    /// this transaction) and reads the session as it is now, kept alive at
    /// least until the lease ends.
    fn grant(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        token: String,
        lease: Duration,
        now: Instant,
    ) -> Result<LockGrant, Fault> {
        let now_ms = now_ms();
        let until_ms = now_ms + lease.as_millis() as i64;
        let fence = tables::next_fence(txn, key)?;
        let session = tables::keep_alive(txn, key, now_ms, until_ms)?;
        let held = Held {
            saw: session.as_ref().map_or(0, |s| s.version),
            until_ms,
        };
        self.locks.hold(key, token.clone(), now + lease, held);
        self.locks.note_grant(key, fence, now_ms);
        if self.watched(key) {
            self.note(
                key,
                Logged::Acquired {
                    fence,
                    lease_expires_ms: until_ms,
                },
            );
        }
        Ok(LockGrant {
            token,
            fence,
            lease_expires_ms: until_ms,
            session,
            superseded: Default::default(),
            replayed: false,
        })
    }

    fn release(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        self.note_release(key, now);
        self.locks.release(key);
        self.hand_over(txn, key, now, out)
    }

    /// Grants a free lock to the first waiter still waiting; if nobody holds
    /// or waits for it then, forgets the lock's entry and drops the meta row
    /// of an id that was never written.
    fn hand_over(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        now: Instant,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        if let Some(waiter) = self.locks.next_waiter(key, now) {
            match self.grant(txn, key, waiter.token.clone(), waiter.lease, now) {
                Ok(mut grant) => {
                    grant.superseded = self.locks.take_burst(key, &waiter.token);
                    if let Err(fault) =
                        self.record_grant(txn, key, waiter.idem.as_ref(), &grant, out)
                    {
                        self.locks.requeue(key.to_vec(), waiter);
                        return Err(fault);
                    }
                    out.push(Answer::HandedOver {
                        key: key.to_vec(),
                        waiter,
                        grant,
                    });
                }
                Err(fault) => {
                    self.locks.requeue(key.to_vec(), waiter);
                    return Err(fault);
                }
            }
        }
        if self.locks.forget_if_idle(key) {
            tables::drop_if_unwritten(txn, key)?;
        }
        Ok(())
    }

    /// Passes on the locks whose lease ran out while others were waiting,
    /// and the free ones with waiters (left by a failed batch).
    pub(super) fn expire_leases(
        &mut self,
        txn: &WriteTransaction,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        let now = Instant::now();
        for key in self.locks.expire_waited_for(now) {
            self.hand_over(txn, &key, now, out)?;
        }
        Ok(())
    }

    /// Answers `reply` with the earlier grant under the lock key `idem`, if
    /// there is one (`None`: answered); else hands `reply` back for a new
    /// attempt.
    fn replay(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        idem: Option<&Idempotency>,
        now: Instant,
        reply: Reply<LockGrant>,
        out: &mut Vec<Answer>,
    ) -> Result<Option<Reply<LockGrant>>, Fault> {
        match self.lock_replay(txn, key, idem, now) {
            Ok(Some(replay)) => {
                out.push(Answer::Replayed(reply, replay));
                Ok(None)
            }
            Ok(None) => Ok(Some(reply)),
            Err(fault) => Err(answered(reply, fault)),
        }
    }

    /// Deletes idle sessions, forgets leases that ran out unwaited, and drops
    /// the meta rows of ids never written that nobody holds or waits for.
    pub(super) fn sweep(&mut self, txn: &WriteTransaction) -> Result<(), Fault> {
        let now = Instant::now();
        self.locks.forget_expired(now);
        let locks = &self.locks;
        let in_use = |key: &[u8]| locks.in_use(key, now);
        let swept = quota::sweep(self.counted.as_mut(), txn, now_ms(), in_use)?;
        if swept != tables::Swept::default() {
            tracing::debug!(?swept, "embedded store swept");
        }
        Ok(())
    }
}

/// Whether a step's outcome ends the lock: a release asked for with a write
/// that was done, or a session that expired under its holder.
fn ends_lock<T>(outcome: &Outcome<T>, release_lock: bool) -> bool {
    match outcome {
        Outcome::Done(_) => release_lock,
        Outcome::Refused(r) => matches!(r, Refusal::SessionLost),
    }
}

/// A command whose own step failed: its caller is told at once, and the
/// fault goes on to fail the rest of the batch.
fn answered<T>(reply: Reply<T>, fault: Fault) -> Fault {
    command::err(reply, &fault);
    fault
}
