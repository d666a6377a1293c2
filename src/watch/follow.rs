//! The follower of one watched session on this instance: one task that
//! reads the session's log and hands its events to the session's watchers
//! here, in the order the store logged them.
//!
//! A watcher joins with a snapshot taken by the store together with the
//! log's position (`Begin`), so it is given exactly the entries after it;
//! a resume is served from the log the store keeps (the entries after the
//! change that made the watcher's version), else answered with a snapshot
//! marked `resync`. A log read that finds the entries after its position
//! trimmed, or a write whose version is not one above the last, gives every
//! watcher a fresh `resync` snapshot: never a silent gap.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tokio::sync::{Notify, mpsc};

use super::{
    Begin, Entry, Event, HEARTBEAT, Hub, Join, LINGER, LockView, Logged, Pos, READ_BATCH, Watched,
};
use crate::error::{Error, Result};
use crate::session::SessionKey;
use crate::store::{Store, now_ms};

/// What a follower knows of its session, to infer what no step logs.
#[derive(Debug, Default, Clone)]
struct Known {
    /// The last version known (0: unknown, or none ever).
    version: u64,
    /// A live session's idle expiry (ms), `None` when it does not exist.
    live_until: Option<i64>,
    /// The holder's fence and the end of its lease as last known.
    lock: LockView,
}

impl Known {
    fn of(begin: &Begin) -> Known {
        Known {
            version: begin.session.as_ref().map_or(0, |s| s.version),
            live_until: begin.session.as_ref().map(|s| s.expires_ms),
            lock: begin.lock,
        }
    }

    /// The events of one logged entry (with what it shows that no step
    /// logged: a lease that ran out before another grant, an idle expiry
    /// before a write that creates the session again). `Err(())`: the
    /// entry's version shows a gap.
    fn apply(&mut self, logged: &Logged, out: &mut Vec<Watched>) -> std::result::Result<(), ()> {
        match logged {
            Logged::Changed(c) => {
                // Versions go up by one a write; anything else is a gap (or
                // a store that lost data and counts again from lower).
                if self.version != 0 && c.version != self.version + 1 {
                    return Err(());
                }
                if c.created && self.live_until.is_some() {
                    self.idle_expired(out);
                }
                self.version = c.version;
                self.live_until = Some(c.expires_ms);
                out.push(self.event(Event::Changed(c.clone())));
            }
            Logged::Deleted { version } => {
                self.live_until = None;
                self.version = self.version.max(*version);
                out.push(Watched {
                    version: *version,
                    event: Event::Deleted,
                });
            }
            Logged::Acquired {
                fence,
                lease_expires_ms,
            } => {
                if let Some((held, _)) = self.lock
                    && held != *fence
                {
                    out.push(self.event(Event::Expired { fence: held }));
                }
                self.lock = Some((*fence, *lease_expires_ms));
                // The lease keeps the session alive.
                if let Some(until) = &mut self.live_until {
                    *until = (*until).max(*lease_expires_ms);
                }
                out.push(self.event(Event::Acquired {
                    fence: *fence,
                    lease_expires_ms: *lease_expires_ms,
                }));
            }
            Logged::Released { fence } => {
                self.lock = None;
                out.push(self.event(Event::Released { fence: *fence }));
            }
            Logged::Forced { fence } => {
                self.lock = None;
                out.push(self.event(Event::Forced { fence: *fence }));
            }
            Logged::Began => {}
            Logged::Gap { .. } => return Err(()),
        }
        Ok(())
    }

    fn idle_expired(&mut self, out: &mut Vec<Watched>) {
        self.live_until = None;
        out.push(self.event(Event::IdleExpired));
    }

    fn event(&self, event: Event) -> Watched {
        Watched {
            version: self.version,
            event,
        }
    }
}

/// One watcher of this follower.
struct Watcher {
    tx: mpsc::Sender<Result<Watched>>,
    /// Entries up to this position are in what it was given already.
    from: Pos,
    lagged: Arc<std::sync::atomic::AtomicBool>,
    counted: super::Counted,
}

impl Watcher {
    /// Hands it an event; false when it is gone or lags (then it is told
    /// so, in the one place kept for that, and dropped).
    fn send(&self, event: &Watched) -> bool {
        let stats = &self.counted.hub.stats;
        if self.tx.capacity() <= 1 {
            self.lagged.store(true, Relaxed);
            if self.tx.try_send(Err(Error::WatchLagged)).is_ok() {
                stats.watch_lagged.fetch_add(1, Relaxed);
            }
            return false;
        }
        let sent = self.tx.try_send(Ok(event.clone())).is_ok();
        if sent {
            stats.watch_events.fetch_add(1, Relaxed);
        }
        sent
    }
}

struct Follower {
    hub: Arc<Hub>,
    store: Arc<Store>,
    key: SessionKey,
    watchers: Vec<Watcher>,
    /// Where this follower has read the log to; `None` before it began.
    pos: Option<Pos>,
    known: Known,
    /// Woken when the session's log has news.
    notify: Arc<Notify>,
}

/// Follows `key` until it has had no watcher for [`LINGER`].
pub(super) async fn run(
    hub: Arc<Hub>,
    store: Arc<Store>,
    key: SessionKey,
    mut joins: mpsc::UnboundedReceiver<Join>,
    notify: Arc<Notify>,
) {
    let mut f = Follower {
        hub,
        store,
        key,
        watchers: Vec::new(),
        pos: None,
        known: Known::default(),
        notify: notify.clone(),
    };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut alone_since = Instant::now();
    loop {
        tokio::select! {
            join = joins.recv() => match join {
                Some(join) => f.join(join).await,
                None => return,
            },
            () = notify.notified() => f.catch_up().await,
            _ = heartbeat.tick() => {
                f.watchers.retain(|w| !w.tx.is_closed());
                let _ = f.store.watch_keep(&f.key).await;
                f.catch_up().await;
                f.due().await;
            }
        }
        if f.hub.is_closed() {
            // The drain: the watchers' streams end at the edge; this task
            // ends now, and with it its hold on the store.
            f.hub.forget(&f.key, &mut joins);
            return;
        }
        if !f.watchers.is_empty() {
            alone_since = Instant::now();
        } else if alone_since.elapsed() >= LINGER && f.hub.end(&f.key, &mut joins) {
            return;
        }
    }
}

impl Follower {
    async fn join(&mut self, join: Join) {
        // Everything logged so far goes to the watchers already here first;
        // the new one is given what is logged after its snapshot.
        self.catch_up().await;
        let begin = match self.store.watch_begin(&self.key, &self.notify).await {
            Ok(begin) => begin,
            Err(e) => {
                let _ = join.tx.try_send(Err(e));
                return;
            }
        };
        if self.pos.is_none() {
            self.pos = Some(begin.last);
            self.known = Known::of(&begin);
        }
        let watcher = Watcher {
            tx: join.tx,
            from: begin.last,
            lagged: join.lagged,
            counted: join.counted,
        };
        let first =
            resumed(&begin, join.after).unwrap_or_else(|| vec![snapshot(&begin, join.after > 0)]);
        if first.iter().all(|e| watcher.send(e)) {
            self.watchers.push(watcher);
        }
    }

    /// Reads the log after this follower's position and hands on its events,
    /// a batch at a time until it has read them all.
    async fn catch_up(&mut self) {
        while let Some(pos) = self.pos {
            let entries = match self.store.watch_read(&self.key, pos).await {
                Ok(Some(entries)) => entries,
                Ok(None) => return self.resync().await,
                Err(e) => return self.fail(e),
            };
            let full = entries.len() >= READ_BATCH;
            if !self.hand_on(entries).await || !full {
                return;
            }
        }
    }

    /// Hands on the events of `entries`; false when a gap made it resync.
    async fn hand_on(&mut self, entries: Vec<Entry>) -> bool {
        for entry in entries {
            let mut out = Vec::new();
            if self.known.apply(&entry.logged, &mut out).is_err() {
                self.resync().await;
                return false;
            }
            self.pos = Some(entry.pos);
            self.watchers
                .retain(|w| entry.pos <= w.from || out.iter().all(|e| w.send(e)));
        }
        true
    }

    /// A lease or an idle TTL that is due: the store says whether it ran
    /// out (what the log says first: the lock may have been passed on).
    async fn due(&mut self) {
        let now = now_ms();
        if let Some((fence, until)) = self.known.lock
            && until <= now
        {
            match self.store.inspect(&self.key).await {
                Ok(seen) => match seen.holder {
                    Some(h) if h.fence == fence => {
                        // Refreshed: its lease ends later.
                        self.known.lock = Some((fence, h.lease_expires_ms));
                    }
                    _ => {
                        self.catch_up().await;
                        if self.known.lock.is_some_and(|(f, _)| f == fence) {
                            self.known.lock = None;
                            let event = self.known.event(Event::Expired { fence });
                            self.broadcast(&event);
                        }
                    }
                },
                Err(e) => return self.fail(e),
            }
        }
        if let Some(until) = self.known.live_until
            && until <= now
        {
            match self.store.get(&self.key).await {
                Ok(Some(s)) if s.version == self.known.version => {
                    self.known.live_until = Some(s.expires_ms);
                }
                Ok(Some(_)) => self.catch_up().await,
                Ok(None) => {
                    self.catch_up().await;
                    if self.known.live_until.is_some_and(|u| u <= now) {
                        let mut out = Vec::new();
                        self.known.idle_expired(&mut out);
                        for event in &out {
                            self.broadcast(event);
                        }
                    }
                }
                Err(e) => self.fail(e),
            }
        }
    }

    fn broadcast(&mut self, event: &Watched) {
        self.watchers.retain(|w| w.send(event));
    }

    /// The log cannot say what happened since this follower's position:
    /// every watcher gets the state afresh.
    async fn resync(&mut self) {
        match self.store.watch_begin(&self.key, &self.notify).await {
            Ok(begin) => {
                self.pos = Some(begin.last);
                self.known = Known::of(&begin);
                let event = snapshot(&begin, true);
                for w in &mut self.watchers {
                    w.from = begin.last;
                }
                self.broadcast(&event);
            }
            Err(e) => self.fail(e),
        }
    }

    /// The store failed: the watchers are ended with its error (they resume
    /// from their versions) and the follower starts afresh with the next.
    fn fail(&mut self, e: Error) {
        tracing::debug!(error = %e, "watch follower lost the store");
        for w in self.watchers.drain(..) {
            let _ = w.tx.try_send(Err(again(&e)));
        }
        self.pos = None;
    }
}

/// The first message of a watcher: the snapshot.
fn snapshot(begin: &Begin, resync: bool) -> Watched {
    Watched {
        version: begin.session.as_ref().map_or(0, |s| s.version),
        event: Event::Snapshot {
            session: begin.session.clone().map(Arc::new),
            lock: begin.lock,
            resync,
        },
    }
}

/// A resume's messages: `resumed`, then the events logged after the change
/// that made `after`; `None` when the log no longer holds that change.
fn resumed(begin: &Begin, after: u64) -> Option<Vec<Watched>> {
    if after == 0 {
        return None;
    }
    let at = begin
        .log
        .iter()
        .position(|e| matches!(&e.logged, Logged::Changed(c) if c.version == after))?;
    // What the log shows of the lock up to there.
    let mut known = Known::default();
    let mut ignored = Vec::new();
    for e in begin.log.iter().take(at + 1) {
        let _ = known.apply(&e.logged, &mut ignored);
    }
    known.version = after;
    let mut out = vec![Watched {
        version: after,
        event: Event::Resumed { after },
    }];
    for Entry { logged, .. } in begin.log.iter().skip(at + 1) {
        known.apply(logged, &mut out).ok()?;
    }
    Some(out)
}

/// The same error again, for each watcher it ends.
fn again(e: &Error) -> Error {
    match e {
        Error::StoreUnavailable(m) => Error::StoreUnavailable(m.clone()),
        Error::ShuttingDown => Error::ShuttingDown,
        other => Error::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::Change;

    fn change(version: u64, created: bool) -> Logged {
        Logged::Changed(Arc::new(Change {
            version,
            created,
            set: vec![("a".into(), bytes::Bytes::from_static(b"1"))],
            removed: Vec::new(),
            replaced: false,
            expires_ms: 1_000,
        }))
    }

    fn kinds(out: &[Watched]) -> Vec<(u64, &'static str)> {
        out.iter()
            .map(|w| {
                let kind = match &w.event {
                    Event::Changed(_) => "changed",
                    Event::Acquired { .. } => "acquired",
                    Event::Released { .. } => "released",
                    Event::Expired { .. } => "expired",
                    Event::Forced { .. } => "forced",
                    Event::Deleted => "deleted",
                    Event::IdleExpired => "idle",
                    Event::Snapshot { .. } => "snapshot",
                    Event::Resumed { .. } => "resumed",
                };
                (w.version, kind)
            })
            .collect()
    }

    #[test]
    fn what_no_step_logs_is_inferred_from_the_log() {
        let mut k = Known::default();
        let mut out = Vec::new();
        for logged in [
            change(1, true),
            Logged::Acquired {
                fence: 7,
                lease_expires_ms: 50,
            },
            // Another grant without a release: the first lease ran out.
            Logged::Acquired {
                fence: 8,
                lease_expires_ms: 90,
            },
            Logged::Released { fence: 8 },
            // A write that creates the session while it was live: it
            // expired idly in between.
            change(2, true),
            Logged::Deleted { version: 2 },
            change(3, true),
            Logged::Began,
        ] {
            k.apply(&logged, &mut out).unwrap();
        }
        assert_eq!(
            kinds(&out),
            [
                (1, "changed"),
                (1, "acquired"),
                (1, "expired"),
                (1, "acquired"),
                (1, "released"),
                (1, "idle"),
                (2, "changed"),
                (2, "deleted"),
                (3, "changed"),
            ]
        );
    }

    #[test]
    fn a_version_out_of_step_is_a_gap() {
        let mut k = Known::default();
        let mut out = Vec::new();
        k.apply(&change(4, false), &mut out).unwrap();
        assert!(k.apply(&change(6, false), &mut out).is_err(), "skipped 5");
        assert!(k.apply(&change(4, false), &mut out).is_err(), "went back");
        assert!(k.apply(&change(5, false), &mut out).is_ok());
        let gap = Logged::Gap { version: 6 };
        assert!(k.apply(&gap, &mut out).is_err(), "a write too large to log");
    }

    #[test]
    fn a_resume_is_served_only_from_the_change_it_names() {
        let entry = |n: u64, logged| Entry {
            pos: (n, 0),
            logged,
        };
        let begin = Begin {
            session: None,
            lock: None,
            log: vec![
                entry(1, change(3, false)),
                entry(
                    2,
                    Logged::Acquired {
                        fence: 9,
                        lease_expires_ms: 10,
                    },
                ),
                entry(3, change(4, false)),
                entry(4, Logged::Released { fence: 9 }),
            ],
            last: (4, 0),
        };
        let out = resumed(&begin, 3).unwrap();
        assert_eq!(
            kinds(&out),
            [
                (3, "resumed"),
                (3, "acquired"),
                (4, "changed"),
                (4, "released")
            ]
        );
        assert!(resumed(&begin, 2).is_none(), "older than the log");
        assert!(resumed(&begin, 0).is_none(), "0 asks for a snapshot");
    }
}
