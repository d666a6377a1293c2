//! A session's burst (see `TurnPolicy` in the proto): the newest waiter
//! that asked for LATEST_WINS or DEBOUNCE, its quiet period and the
//! payloads it carries. A newcomer supersedes it, takes its place in the
//! queue and carries its payloads on; FIFO waiters are never touched. Every
//! change is journaled with the rest of the batch (`Undo::Burst`).

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{LockState, LockTable, Undo, Waiter};
use crate::session::{Chain, Superseded};

#[derive(Clone)]
pub(super) struct Burst {
    /// The token of its waiter (the newest to join).
    pub token: String,
    /// Its waiter's quiet period (zero: LATEST_WINS).
    debounce: Duration,
    /// When its waiter joined.
    joined: Instant,
    /// Its waiter's own payload, carried on by whoever supersedes it.
    own: Bytes,
    /// The payloads of the waiters it superseded, oldest first.
    chain: Chain,
}

impl LockState {
    /// When the waiter first in line may be granted the lock, if that is
    /// the burst's waiter waiting out its quiet period.
    pub(super) fn quiet_until(&self) -> Option<Instant> {
        let b = self.burst.as_ref()?;
        let first = self.queue.front()?;
        (first.token == b.token && !b.debounce.is_zero()).then(|| b.joined + b.debounce)
    }
}

impl LockTable {
    /// Queues `waiter` as the newest of `key`'s burst: it supersedes the
    /// burst's waiter still queued, which is returned (its caller is told
    /// SUPERSEDED) after its place and its payloads went to `waiter`. A
    /// burst whose waiter left the queue without the lock ends with it.
    pub(in crate::store::embedded) fn join_burst(
        &mut self,
        key: Vec<u8>,
        waiter: Waiter,
        debounce: Duration,
        payload: Bytes,
        max_chain: u64,
        now: Instant,
    ) -> Option<Waiter> {
        let state = self.locks.entry(key.clone()).or_default();
        let before = state.burst.take();
        let mut chain = Chain::default();
        let mut superseded = None;
        if let Some(b) = &before {
            let queued = state
                .queue
                .iter()
                .position(|w| w.token == b.token && !w.reply.is_closed());
            if let Some(at) = queued {
                chain = b.chain.clone();
                chain.push(b.own.clone(), max_chain);
                superseded = state.queue.remove(at).map(|old| (at, old));
            }
        }
        state.burst = Some(Burst {
            token: waiter.token.clone(),
            debounce,
            joined: now,
            own: payload,
            chain,
        });
        self.journal.push(Undo::Burst(key.clone(), before));
        self.journal
            .push(Undo::Queued(key.clone(), waiter.token.clone()));
        match superseded {
            Some((at, old)) => {
                state.queue.insert(at, waiter);
                Some(old)
            }
            None => {
                state.queue.push_back(waiter);
                None
            }
        }
    }

    /// The payloads `token` carries, if it is the burst's waiter: the burst
    /// ends with its grant.
    pub(in crate::store::embedded) fn take_burst(&mut self, key: &[u8], token: &str) -> Superseded {
        let Some(state) = self.locks.get_mut(key) else {
            return Superseded::default();
        };
        if state.burst.as_ref().is_none_or(|b| b.token != token) {
            return Superseded::default();
        }
        let before = state.burst.take();
        let chain = before.as_ref().map(|b| b.chain.clone()).unwrap_or_default();
        self.journal.push(Undo::Burst(key.to_vec(), before));
        chain.into()
    }
}
