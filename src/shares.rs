//! Fair shares of one instance among its callers: how many SessionService
//! calls it works on at once, in all and per namespace, and how many
//! LockSession callers may queue, per namespace and per session.
//!
//! Counts, not queues: a call over a limit is refused at once (OVERLOADED,
//! with the limit's name in the ErrorInfo metadata), never parked. The
//! namespace's limit is checked before the instance's, so a namespace that
//! floods is refused at its own limit and leaves the rest of the instance to
//! the others (when the per-namespace limits add up to no more than
//! `--max-concurrent-calls`).
//!
//! A queued LockSession does no work. With `--max-waiters-per-namespace`
//! set, it leaves the working calls while it waits and holds a waiter slot
//! of its namespace instead: a counter of calls gone waiting, subtracted from
//! the calls in flight, so nothing is handed over per call. Unset (the
//! default), a waiter holds its call slot as any call does, as it always
//! has. The counts are this instance's: on Redis, the queue of a session
//! spans instances, and each caps its own callers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use parking_lot::{Mutex, RwLock};

use crate::auth::Auth;
use crate::error::{Error, Result};
use crate::session::{SessionKey, default_namespace};

/// The limits, from the configuration; `usize::MAX` or 0 where unset.
#[derive(Debug, Clone, Copy)]
pub struct ShareLimits {
    /// `--max-concurrent-calls`.
    pub calls: usize,
    /// `--max-calls-per-namespace` (`usize::MAX`: unlimited).
    pub calls_per_namespace: usize,
    /// `--max-waiters-per-namespace` (0: waiters hold their call slot).
    pub waiters_per_namespace: usize,
    /// `--max-waiters-per-session` (0: no cap).
    pub waiters_per_session: usize,
}

impl ShareLimits {
    /// No limit at all, for a `State` that serves no calls (tests, tools).
    pub const NONE: ShareLimits = ShareLimits {
        calls: usize::MAX,
        calls_per_namespace: usize::MAX,
        waiters_per_namespace: 0,
        waiters_per_session: 0,
    };
}

/// One namespace's share: its calls in flight and those of them queued for
/// a lock (counted only while waiters have slots of their own).
#[derive(Debug)]
pub struct Share {
    pub namespace: Arc<str>,
    calls: AtomicUsize,
    waiting: AtomicUsize,
}

impl Share {
    fn new(namespace: Arc<str>) -> Share {
        Share {
            namespace,
            calls: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// Who a call is for: the share of its namespace, decided from its headers
/// by `authenticate` and carried in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Share>);

#[derive(Debug)]
pub struct Shares {
    limits: ShareLimits,
    calls: AtomicUsize,
    waiting: AtomicUsize,
    /// Every namespace a token grants, and those granted since by a
    /// reloaded tokens file; with authentication off, only `default` is used.
    namespaces: RwLock<HashMap<Arc<str>, Arc<Share>>>,
    default: Arc<Share>,
    /// Callers waiting per session, while `waiters_per_session` is set.
    session_waiters: Mutex<HashMap<SessionKey, usize>>,
}

impl Shares {
    pub fn new(auth: Option<&Auth>, limits: ShareLimits) -> Shares {
        let namespaces = auth
            .into_iter()
            .flat_map(Auth::namespaces)
            .map(|ns| (ns.clone(), Arc::new(Share::new(ns))))
            .collect();
        Shares {
            limits,
            calls: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            namespaces: RwLock::new(namespaces),
            default: Arc::new(Share::new(default_namespace().clone())),
            session_waiters: Mutex::new(HashMap::new()),
        }
    }

    /// The share of the `default` namespace, used while authentication is off.
    pub fn default_share(&self) -> &Arc<Share> {
        &self.default
    }

    /// The share of a namespace a token granted. A namespace first granted
    /// by a reloaded tokens file gets its share at its first call (only
    /// granted namespaces get here, so callers cannot grow the map).
    pub fn of(&self, namespace: &Arc<str>) -> Arc<Share> {
        if let Some(share) = self.namespaces.read().get(namespace) {
            return share.clone();
        }
        self.namespaces
            .write()
            .entry(namespace.clone())
            .or_insert_with(|| Arc::new(Share::new(namespace.clone())))
            .clone()
    }

    /// Counts a new call of `share`, or refuses it: the namespace's working
    /// calls first, then the instance's. The count ends when the
    /// [`Admitted`] is dropped.
    pub fn admit(self: &Arc<Self>, share: &Arc<Share>) -> Result<Admitted> {
        let working =
            |calls: usize, waiting: &AtomicUsize| calls.saturating_sub(waiting.load(Relaxed));
        // A namespace's calls are counted only where its limit applies: the
        // count is two atomic operations on a line every call shares.
        let share = (self.limits.calls_per_namespace != usize::MAX).then(|| share.clone());
        if let Some(share) = &share {
            let mine = share.calls.fetch_add(1, Relaxed) + 1;
            if working(mine, &share.waiting) > self.limits.calls_per_namespace {
                share.calls.fetch_sub(1, Relaxed);
                return Err(Error::ShareExceeded {
                    limit: "max_calls_per_namespace",
                });
            }
        }
        let all = self.calls.fetch_add(1, Relaxed) + 1;
        if working(all, &self.waiting) > self.limits.calls {
            self.calls.fetch_sub(1, Relaxed);
            if let Some(share) = &share {
                share.calls.fetch_sub(1, Relaxed);
            }
            return Err(Error::Overloaded);
        }
        Ok(Admitted {
            shares: self.clone(),
            share,
        })
    }

    /// Counts a LockSession caller of `share` that may queue for the lock of
    /// `key`, or refuses it (its session's waiters, then its namespace's).
    /// With waiter slots of their own, the call leaves the working calls
    /// until the [`Waiting`] is dropped.
    pub fn wait<'a>(&'a self, share: &'a Share, key: &'a SessionKey) -> Result<Waiting<'a>> {
        let per_session = self.limits.waiters_per_session > 0;
        if per_session {
            let mut waiters = self.session_waiters.lock();
            match waiters.get_mut(key) {
                Some(n) if *n >= self.limits.waiters_per_session => {
                    return Err(Error::ShareExceeded {
                        limit: "max_waiters_per_session",
                    });
                }
                Some(n) => *n += 1,
                None => {
                    waiters.insert(key.clone(), 1);
                }
            }
        }
        let mut waiting = Waiting {
            shares: self,
            share,
            key: per_session.then_some(key),
            slot: false,
        };
        if self.limits.waiters_per_namespace > 0 {
            let queued = share.waiting.fetch_add(1, Relaxed);
            if queued >= self.limits.waiters_per_namespace {
                share.waiting.fetch_sub(1, Relaxed);
                // `waiting` drops here and gives back its session count.
                return Err(Error::ShareExceeded {
                    limit: "max_waiters_per_namespace",
                });
            }
            self.waiting.fetch_add(1, Relaxed);
            waiting.slot = true;
        }
        Ok(waiting)
    }

    #[cfg(test)]
    fn counts(&self, share: &Share) -> [usize; 4] {
        [
            self.calls.load(Relaxed),
            self.waiting.load(Relaxed),
            share.calls.load(Relaxed),
            share.waiting.load(Relaxed),
        ]
    }
}

/// A call counted in flight; dropping it (the answer is ready, or the
/// caller went away) ends the count.
#[derive(Debug)]
pub struct Admitted {
    shares: Arc<Shares>,
    /// `None` while namespaces have no limit of their own.
    share: Option<Arc<Share>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shares.calls.fetch_sub(1, Relaxed);
        if let Some(share) = &self.share {
            share.calls.fetch_sub(1, Relaxed);
        }
    }
}

/// A LockSession caller counted as a waiter; dropped when its wait ends
/// (granted, timed out, or given up).
#[derive(Debug)]
pub struct Waiting<'a> {
    shares: &'a Shares,
    share: &'a Share,
    /// The session whose waiters count it, if they are capped.
    key: Option<&'a SessionKey>,
    /// Whether it holds a waiter slot of its namespace (and so is not a
    /// working call).
    slot: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.slot {
            self.shares.waiting.fetch_sub(1, Relaxed);
            self.share.waiting.fetch_sub(1, Relaxed);
        }
        if let Some(key) = self.key {
            let mut waiters = self.shares.session_waiters.lock();
            if let Some(n) = waiters.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    waiters.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(limits: ShareLimits) -> (Arc<Shares>, Arc<Share>, Arc<Share>) {
        let auth = Auth::parse("AAAAAAAAAAAAAAAAAAAA a\nBBBBBBBBBBBBBBBBBBBB b,a\n").unwrap();
        let s = Arc::new(Shares::new(Some(&auth), limits));
        let (a, b) = (s.of(&"a".into()), s.of(&"b".into()));
        (s, a, b)
    }

    fn refused_by<T: std::fmt::Debug>(r: Result<T>) -> &'static str {
        match r {
            Err(Error::ShareExceeded { limit }) => limit,
            Err(Error::Overloaded) => "max_concurrent_calls",
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_namespace_is_refused_at_its_own_limit_first() {
        let limits = ShareLimits {
            calls: 3,
            calls_per_namespace: 2,
            ..ShareLimits::NONE
        };
        let (s, a, b) = shares(limits);
        let a1 = s.admit(&a).unwrap();
        let _a2 = s.admit(&a).unwrap();
        assert_eq!(refused_by(s.admit(&a)), "max_calls_per_namespace");
        let _b1 = s.admit(&b).unwrap();
        assert_eq!(refused_by(s.admit(&b)), "max_concurrent_calls");
        assert_eq!(s.counts(&a), [3, 0, 2, 0], "refusals are not counted");
        drop(a1);
        let _b2 = s.admit(&b).unwrap();
        assert_eq!(s.counts(&b), [3, 0, 2, 0]);
    }

    #[test]
    fn waiters_with_slots_leave_the_working_calls() {
        let limits = ShareLimits {
            calls: 2,
            calls_per_namespace: 1,
            waiters_per_namespace: 2,
            waiters_per_session: 0,
        };
        let (s, a, _) = shares(limits);
        let key = SessionKey::new("a", "k").unwrap();
        let _c1 = s.admit(&a).unwrap();
        let w1 = s.wait(&a, &key).unwrap();
        let _c2 = s.admit(&a).unwrap();
        let _w2 = s.wait(&a, &key).unwrap();
        let _c3 = s.admit(&a).unwrap();
        assert_eq!(s.counts(&a), [3, 2, 3, 2]);
        assert_eq!(refused_by(s.wait(&a, &key)), "max_waiters_per_namespace");
        assert_eq!(
            s.counts(&a),
            [3, 2, 3, 2],
            "the refused waiter is not counted"
        );
        assert_eq!(refused_by(s.admit(&a)), "max_calls_per_namespace");
        drop(w1);
        assert_eq!(s.counts(&a), [3, 1, 3, 1]);
    }

    #[test]
    fn waiters_without_slots_keep_their_call_slot() {
        let limits = ShareLimits {
            calls: 1,
            ..ShareLimits::NONE
        };
        let (s, a, _) = shares(limits);
        let key = SessionKey::new("a", "k").unwrap();
        let _c = s.admit(&a).unwrap();
        let _w = s.wait(&a, &key).unwrap();
        assert_eq!(refused_by(s.admit(&a)), "max_concurrent_calls");
    }

    #[test]
    fn waiters_per_session_are_capped_and_counted_back() {
        let limits = ShareLimits {
            waiters_per_session: 2,
            ..ShareLimits::NONE
        };
        let (s, a, b) = shares(limits);
        let k1 = SessionKey::new("a", "k1").unwrap();
        let k2 = SessionKey::new("a", "k2").unwrap();
        let kb = SessionKey::new("b", "k1").unwrap();
        let w1 = s.wait(&a, &k1).unwrap();
        let _w2 = s.wait(&a, &k1).unwrap();
        assert_eq!(refused_by(s.wait(&a, &k1)), "max_waiters_per_session");
        let _other_session = s.wait(&a, &k2).unwrap();
        let _other_namespace = s.wait(&b, &kb).unwrap();
        drop(w1);
        let _w3 = s.wait(&a, &k1).unwrap();
        drop((_w2, _w3, _other_session, _other_namespace));
        assert!(
            s.session_waiters.lock().is_empty(),
            "no entry outlives its waiters"
        );
    }
}
