//! What operators see of the lock table, and the forced release.

use std::time::Instant;

use super::{LockTable, Undo};

/// One lock as InspectSession shows it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(in crate::store::embedded) struct LockView {
    /// The holder's (fencing token, lease end ms, granted at ms).
    pub holder: Option<(u64, i64, i64)>,
    /// Callers still waiting, and since when the first of them has.
    pub waiters: u32,
    pub oldest: Option<Instant>,
}

impl LockTable {
    /// Records the fencing token and the time of the grant just made to
    /// the holder of `key` (by [`LockTable::hold`] in the same step, so a
    /// rolled back batch undoes this with the grant).
    pub(in crate::store::embedded) fn note_grant(&mut self, key: &[u8], fence: u64, since_ms: i64) {
        if let Some(h) = self.locks.get_mut(key).and_then(|s| s.holder.as_mut()) {
            h.granted = (fence, since_ms);
        }
    }

    /// The lock of `key` now (an expired lease forgotten).
    pub(in crate::store::embedded) fn view(&mut self, key: &[u8], now: Instant) -> LockView {
        let Some(state) = self.live(key, now) else {
            return LockView::default();
        };
        let mut waiting = state.queue.iter().filter(|w| !w.reply.is_closed());
        let oldest = waiting.clone().next().map(|w| w.since);
        LockView {
            holder: state
                .holder
                .as_ref()
                .map(|h| (h.granted.0, h.held.until_ms, h.granted.1)),
            waiters: u32::try_from(waiting.by_ref().count()).unwrap_or(u32::MAX),
            oldest,
        }
    }

    /// Frees the lock whoever holds it (journaled, as a release is); the
    /// released holder's fencing token, `None` when nobody held it.
    pub(in crate::store::embedded) fn force_release(
        &mut self,
        key: &[u8],
        now: Instant,
    ) -> Option<u64> {
        let holder = self.live(key, now)?.holder.take()?;
        let fence = holder.granted.0;
        self.journal.push(Undo::Holder(key.to_vec(), Some(holder)));
        Some(fence)
    }
}
