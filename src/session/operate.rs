//! What operators see and do, in the semantics' own terms: a session as the
//! store knows it (holder, waiters), a forced release, and a page of a
//! listing with the cursor that resumes it.

use super::Session;

/// InspectSession's answer: the session (if it exists) and its lock.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    pub session: Option<Session>,
    pub holder: Option<Holder>,
    /// Callers queued for the lock (on Redis: the live ones, every instance).
    pub waiters: u32,
    /// How long the first of them has waited (on Redis, by the clock of the
    /// instance it waits through).
    pub oldest_wait_ms: u64,
}

/// The holder of a lock, as operators see it: never its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub fence: u64,
    pub lease_expires_ms: i64,
    pub since_ms: i64,
    /// The instance that granted it (the first 16 characters of its
    /// instance id); `None`: this instance (the embedded store has no
    /// other).
    pub instance: Option<String>,
}

/// Where a listing goes on from. Each backend has its own kind; a cursor of
/// the other kind is refused as a malformed page token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Start,
    /// Redis: the SCAN cursor (never 0: 0 is the end).
    Scan(u64),
    /// Redis Cluster: the master being scanned, named by a hash slot it
    /// owns (the lowest it owned when the listing reached it), and its SCAN
    /// cursor there (0: that master's scan has not begun).
    Shard {
        slot: u16,
        scan: u64,
    },
    /// The embedded store: the last id listed (ids are listed in order).
    After(String),
}

/// One page of a listing: the ids (each once) and where the next page
/// starts (`None`: the listing is complete).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub ids: Vec<String>,
    pub next: Option<Cursor>,
}

/// Page sizes: 0 asks for the default; larger ones are capped (a page's
/// cost is bounded whatever the request says).
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// The page size a request asks for, within bounds.
pub fn page_size(asked: u32) -> usize {
    match asked as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}
