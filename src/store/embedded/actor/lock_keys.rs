//! Idempotency keys of LockSession on the embedded store: a repeat within
//! the window gets the first grant's answer instead of locking again, and
//! the grant is recorded in the batch's transaction that makes it.

use std::time::Instant;

use redb::WriteTransaction;

use super::Actor;
use super::command::Answer;
use crate::session::{Idempotency, LockGrant};
use crate::store::embedded::outcome::{Fault, Outcome, Refusal};
use crate::store::embedded::tables::{self, EarlierGrant};
use crate::store::now_ms;

impl Actor {
    /// The answer of an earlier grant under the lock key `idem`, if any:
    /// the same token, fencing token, lease end (its end now, if that grant
    /// still holds the lock) and superseded payloads, with the session as it
    /// is now; another
    /// request under the key is refused.
    pub(super) fn lock_replay(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        idem: Option<&Idempotency>,
        now: Instant,
    ) -> Result<Option<Outcome<LockGrant>>, Fault> {
        let Some(idem) = idem else {
            return Ok(None);
        };
        let now_ms = now_ms();
        match tables::earlier_grant(txn, key, idem, now_ms)? {
            None => Ok(None),
            Some(EarlierGrant::Other) => Ok(Some(Outcome::Refused(Refusal::Limit(idem.reused())))),
            Some(EarlierGrant::Same {
                token,
                fence,
                lease_expires_ms,
                superseded,
            }) => {
                let lease_expires_ms = self
                    .locks
                    .held_until(key, &token, now)
                    .unwrap_or(lease_expires_ms);
                let session =
                    tables::read_session(&txn.open_table(tables::SESSIONS)?, key, now_ms)?;
                Ok(Some(Outcome::Done(LockGrant {
                    token,
                    fence,
                    lease_expires_ms,
                    session,
                    superseded,
                    replayed: true,
                })))
            }
        }
    }

    /// Records `grant` under its lock key, if it has one, for the window;
    /// the waiters of the same key queued meanwhile get its answer (or
    /// IDEMPOTENCY_KEY_REUSED, for another request under it) at once.
    pub(super) fn record_grant(
        &mut self,
        txn: &WriteTransaction,
        key: &[u8],
        idem: Option<&Idempotency>,
        grant: &LockGrant,
        out: &mut Vec<Answer>,
    ) -> Result<(), Fault> {
        let Some(idem) = idem else {
            return Ok(());
        };
        let until = now_ms() + self.limits.idempotency_window.as_millis() as i64;
        tables::remember_grant(txn, key, idem, until, grant)?;
        for w in self.locks.take_same_key(key, idem) {
            let outcome = match &w.idem {
                Some(i) if i == idem => Outcome::Done(LockGrant {
                    replayed: true,
                    ..grant.clone()
                }),
                _ => Outcome::Refused(Refusal::Limit(idem.reused())),
            };
            out.push(Answer::Replayed(w.reply, outcome));
        }
        Ok(())
    }
}
