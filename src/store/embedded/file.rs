//! The redb file of the embedded store: the handle readers and the actor
//! share, closed after an I/O failure and opened again.
//!
//! After a write fails on the file (a full disk, an I/O error), redb refuses
//! every later operation with `PreviousIo` until the `Database` is dropped
//! and opened again, which repairs the file from its last commit. So a full
//! disk would otherwise end the store until a restart. Instead the actor
//! closes the file on such a fault and opens it again as soon as it can;
//! meanwhile every call fails with STORE_UNAVAILABLE. Readers clone the
//! handle for one read, so a close waits for no one: the old database goes
//! when its last read ends, and an open that meets it still there fails and
//! is retried.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use redb::Database;

use super::outcome::Fault;
use super::tables;

/// How the file is opened.
pub(super) enum Opener {
    /// From its path, as redb opens files.
    Path(PathBuf),
    /// On a storage backend of the tests' (one that fails on demand).
    #[cfg(test)]
    Backend {
        path: PathBuf,
        open: Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send + Sync>,
    },
}

impl Opener {
    fn path(&self) -> &Path {
        match self {
            Opener::Path(path) => path,
            #[cfg(test)]
            Opener::Backend { path, .. } => path,
        }
    }

    fn open(&self) -> Result<Database, Fault> {
        let db = match self {
            Opener::Path(path) => Database::create(path),
            #[cfg(test)]
            Opener::Backend { open, .. } => open(),
        };
        db.map_err(|source| Fault::Open {
            path: self.path().to_owned(),
            source,
        })
    }
}

pub(super) struct DbFile {
    /// `None` while closed.
    db: RwLock<Option<Arc<Database>>>,
    opener: Opener,
}

impl DbFile {
    /// Opens the file and creates the tables it lacks.
    pub(super) fn open(opener: Opener) -> Result<DbFile, Fault> {
        let db = opener.open()?;
        tables::create(&db)?;
        Ok(DbFile {
            db: RwLock::new(Some(Arc::new(db))),
            opener,
        })
    }

    /// The open database; [`Fault::Closed`] while it is being opened again.
    pub(super) fn get(&self) -> Result<Arc<Database>, Fault> {
        self.db.read().clone().ok_or(Fault::Closed)
    }

    /// Drops this handle of the database: after an I/O failure it only
    /// refuses, and the file can be opened again once every handle is gone.
    pub(super) fn close(&self) {
        self.db.write().take();
    }

    /// Opens the file again after [`DbFile::close`].
    pub(super) fn reopen(&self) -> Result<Arc<Database>, Fault> {
        let db = Arc::new(self.opener.open()?);
        *self.db.write() = Some(db.clone());
        Ok(db)
    }
}
