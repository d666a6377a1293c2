//! The invalidation feed's queue, between a shared store's subscription and
//! the cache: bounded, and never blocking the subscription.
//!
//! When the cache falls behind and the queue is full, the invalidations that
//! do not fit are dropped and the cache is told it missed some: `Down` (and
//! `Up` again while the subscription is up) as soon as there is room, which
//! makes it distrust and clear everything it holds. Memory stays bounded and
//! the subscription keeps reading (its wake-ups are not held up behind a slow
//! cache), at the price of a cleared cache after an overflow.

use tokio::sync::mpsc;

use super::FeedEvent;

/// Events the queue holds before it overflows (an event is a key and a
/// version: about a hundred bytes).
pub const FEED_QUEUE: usize = 16_384;

/// The receiving half, read by the server's feed task.
pub type Feed = mpsc::Receiver<FeedEvent>;

/// The sending half, owned by the store's subscription task.
pub struct FeedSender {
    tx: mpsc::Sender<FeedEvent>,
    /// Events were dropped: the cache must hear `Down` (and `Up`) before
    /// anything else.
    missed: bool,
    /// Whether the subscription is up, as the events sent so far say.
    up: bool,
}

/// A bounded feed of `capacity` events.
pub fn channel(capacity: usize) -> (FeedSender, Feed) {
    let (tx, rx) = mpsc::channel(capacity);
    let sender = FeedSender {
        tx,
        missed: false,
        up: false,
    };
    (sender, rx)
}

impl FeedSender {
    /// Queues an event, or drops it and remembers that the cache missed one.
    pub fn send(&mut self, event: FeedEvent) {
        match event {
            FeedEvent::Up => self.up = true,
            FeedEvent::Down => self.up = false,
            FeedEvent::Invalidate(..) | FeedEvent::Slots { .. } => {}
        }
        if self.missed {
            // The reset to come covers this event, whatever it is.
            self.flush();
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(event) {
            self.missed = true;
        }
    }

    /// Tells the cache it missed events once the queue has room for it;
    /// called on every message the subscription reads (its heartbeat comes
    /// every second), so an overflow is reported even when writes stop.
    pub fn flush(&mut self) {
        if !self.missed {
            return;
        }
        let reset: &[fn() -> FeedEvent] = if self.up {
            &[|| FeedEvent::Down, || FeedEvent::Up]
        } else {
            &[|| FeedEvent::Down]
        };
        match self.tx.try_reserve_many(reset.len()) {
            Ok(permits) => {
                for (permit, event) in permits.zip(reset) {
                    permit.send(event());
                }
                self.missed = false;
            }
            Err(mpsc::error::TrySendError::Closed(())) => self.missed = false,
            Err(mpsc::error::TrySendError::Full(())) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionKey;

    fn invalidate(v: u64) -> FeedEvent {
        FeedEvent::Invalidate(SessionKey::new("default", "a").unwrap(), v)
    }

    fn drain(rx: &mut Feed) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(event) = rx.try_recv() {
            seen.push(match event {
                FeedEvent::Invalidate(_, v) => format!("inv{v}"),
                FeedEvent::Down => "down".into(),
                FeedEvent::Up => "up".into(),
                FeedEvent::Slots { up, .. } => format!("slots {up}"),
            });
        }
        seen
    }

    #[test]
    fn an_overflow_is_reported_as_down_then_up_once_there_is_room() {
        let (mut tx, mut rx) = channel(4);
        tx.send(FeedEvent::Up);
        for v in 1..=1000 {
            tx.send(invalidate(v));
        }
        // Bounded: the queue holds what fits and not one event more.
        assert_eq!(rx.len(), 4);
        assert_eq!(drain(&mut rx), ["up", "inv1", "inv2", "inv3"]);
        // The next event, or the heartbeat's flush, brings the reset; the
        // event itself is covered by it.
        tx.send(invalidate(1001));
        assert_eq!(drain(&mut rx), ["down", "up"]);
        tx.send(invalidate(1002));
        assert_eq!(drain(&mut rx), ["inv1002"]);
    }

    #[test]
    fn an_overflow_while_the_subscription_is_down_reports_only_down() {
        let (mut tx, mut rx) = channel(2);
        tx.send(FeedEvent::Up);
        tx.send(invalidate(1));
        tx.send(FeedEvent::Down); // dropped: full
        assert_eq!(drain(&mut rx), ["up", "inv1"]);
        tx.flush();
        assert_eq!(drain(&mut rx), ["down"]);
        tx.send(FeedEvent::Up);
        assert_eq!(drain(&mut rx), ["up"]);
    }

    #[test]
    fn a_reset_waits_until_both_of_its_events_fit() {
        let (mut tx, mut rx) = channel(2);
        tx.send(FeedEvent::Up);
        tx.send(invalidate(1));
        tx.send(invalidate(2)); // dropped
        assert_eq!(rx.try_recv().ok().map(|_| ()), Some(()));
        tx.flush(); // one slot free: not enough for Down and Up
        assert_eq!(drain(&mut rx), ["inv1"]);
        tx.flush();
        assert_eq!(drain(&mut rx), ["down", "up"]);
    }
}
