//! What every RPC handler shares: one cheap-to-clone handle (`Arc<State>`).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::auth::Auth;
use crate::error::{Error, Result};
use crate::session::Limits;
use crate::sessions::Sessions;
use crate::shares::{Caller, Share, ShareLimits, Shares};
use crate::stats::Stats;

pub struct State {
    pub sessions: Sessions,
    /// `None` while authentication is off.
    pub auth: Option<Auth>,
    pub limits: Limits,
    /// Calls and lock waiters in flight, per namespace and in all.
    pub shares: Arc<Shares>,
    pub stats: Arc<Stats>,
    pub instance_id: String,
    pub started: Instant,
    /// Flips to true once shutdown begins.
    drain: watch::Sender<bool>,
}

impl State {
    /// A state without limits on calls in flight (see [`State::with_shares`]).
    pub fn new(sessions: Sessions, auth: Option<Auth>, limits: Limits, stats: Arc<Stats>) -> State {
        State {
            shares: Arc::new(Shares::new(auth.as_ref(), ShareLimits::NONE)),
            sessions,
            auth,
            limits,
            stats,
            instance_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            drain: watch::channel(false).0,
        }
    }

    /// The same state, with these limits on calls and waiters in flight.
    pub fn with_shares(mut self, limits: ShareLimits) -> State {
        self.shares = Arc::new(Shares::new(self.auth.as_ref(), limits));
        self
    }

    /// The share a call works in: the one `authenticate` found for it, or,
    /// with authentication off (where it carries none), `default`'s.
    pub fn share_of<'a>(&'a self, caller: Option<&'a Caller>) -> Result<&'a Arc<Share>> {
        match caller {
            Some(Caller(share)) => Ok(share),
            None if self.auth.is_none() => Ok(self.shares.default_share()),
            None => Err(Error::Internal(
                "the call did not pass authentication".into(),
            )),
        }
    }

    pub fn start_draining(&self) {
        self.drain.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// Completes once shutdown begins.
    pub async fn draining(&self) {
        let mut rx = self.drain.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }
}
