//! The operators' calls over the core: inspect, forced release, listing and
//! purge. A purge deletes through [`Sessions::delete`], the step
//! DeleteSession takes, so versions and fences never go back and cached
//! copies are dropped (here and, through the feed, on other instances).

use std::sync::atomic::Ordering::Relaxed;

use super::Sessions;
use crate::error::{Error, Result};
use crate::session::{Cursor, Guards, Inspection, Page, SessionKey};

/// How often a purge frees a session's lock and tries its delete again
/// before it gives up (each release may hand the lock to a waiter).
const PURGE_ATTEMPTS: usize = 8;

/// What one purge call did.
#[derive(Debug, Default)]
pub struct Purged {
    pub deleted: u64,
    pub next: Option<Cursor>,
}

impl Sessions {
    pub async fn inspect(&self, key: &SessionKey) -> Result<Inspection> {
        self.store.inspect(key).await
    }

    /// Frees the lock of `key` whoever holds it and bumps its fencing
    /// token; the released holder's fencing token (`None`: nobody held it).
    /// Logged and counted.
    pub async fn force_unlock(&self, key: &SessionKey) -> Result<Option<u64>> {
        let released = self.store.force_unlock(key).await?;
        if let Some(fence) = released {
            self.stats.lock_forced_releases.fetch_add(1, Relaxed);
            tracing::warn!(
                namespace = %key.namespace,
                session_id = %crate::session::printable(&key.id),
                fencing_token = fence,
                "lock released by force"
            );
        }
        Ok(released)
    }

    pub async fn list(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: &Cursor,
        size: usize,
    ) -> Result<Page> {
        self.store.list(namespace, prefix, cursor, size).await
    }

    /// Deletes the sessions of one page of the listing of `prefix`; a
    /// locked one has its lock released by force first. A failure ends the
    /// call: what it deleted stays deleted, and the same page token deletes
    /// the rest.
    pub async fn purge(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: &Cursor,
        size: usize,
    ) -> Result<Purged> {
        let page = self.list(namespace, prefix, cursor, size).await?;
        let mut deleted = 0;
        for id in &page.ids {
            let key = SessionKey::new(namespace, id)?;
            if self.purge_one(&key).await? {
                deleted += 1;
            }
        }
        Ok(Purged {
            deleted,
            next: page.next,
        })
    }

    async fn purge_one(&self, key: &SessionKey) -> Result<bool> {
        for _ in 0..PURGE_ATTEMPTS {
            match self.delete(key, Guards::default()).await {
                Err(Error::LockHeld) => {
                    self.force_unlock(key).await?;
                }
                done => return done,
            }
        }
        Err(Error::LockHeld)
    }
}
