//! How a step of the embedded store ends: applied ([`Outcome::Done`]),
//! refused ([`Outcome::Refused`] with a [`Refusal`]), or failed with a
//! [`Fault`].
//!
//! The two kinds of "no" are different types on purpose. A refusal is the
//! caller's answer (the lock is held, the version moved on, a limit would be
//! exceeded): the step wrote nothing and the rest of the batch goes on. A
//! fault is the store's own failure (redb could not read, write or commit, a
//! record does not decode): the whole batch is rolled back. A step returns
//! `Result<Outcome<T>, Fault>`, so `?` carries faults and never a refusal.

use std::path::PathBuf;

use crate::error::Error;

/// What a step that did not fail ended in.
#[derive(Debug)]
#[must_use]
pub(super) enum Outcome<T> {
    /// Applied, in the batch's transaction: answered once the batch commits.
    Done(T),
    /// Refused: the step wrote nothing.
    Refused(Refusal),
}

impl<T> Outcome<T> {
    pub(super) fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Done(v) => Outcome::Done(f(v)),
            Outcome::Refused(r) => Outcome::Refused(r),
        }
    }

    pub(super) fn is_done(&self) -> bool {
        matches!(self, Outcome::Done(_))
    }

    /// The answer its caller gets once the batch is committed.
    pub(super) fn into_result(self) -> Result<T, Error> {
        match self {
            Outcome::Done(v) => Ok(v),
            Outcome::Refused(r) => Err(r.into()),
        }
    }
}

impl<T> From<Result<T, Refusal>> for Outcome<T> {
    fn from(r: Result<T, Refusal>) -> Outcome<T> {
        match r {
            Ok(v) => Outcome::Done(v),
            Err(r) => Outcome::Refused(r),
        }
    }
}

/// Why a step was refused. Each maps to the error its caller gets.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Someone else holds the lock and the write brought no token.
    LockHeld,
    /// The token does not hold the lock (expired, released, never did).
    LockLost,
    /// The session its holder locked expired under the lock (a wall clock
    /// that jumped past the lease's end): the lock ends with it, and its
    /// holder is told LOCK_LOST, as for a lease that ran out, since what it
    /// must do is the same (lock again, read the session as it now is).
    SessionLost,
    /// The compare-and-set guard did not match.
    VersionMismatch { expected: u64, current: u64 },
    /// The write would exceed a limit, or a field operation does not fit
    /// the stored value; the error as [`crate::session::Limits`] or
    /// [`crate::session::OpRefusal`] words it.
    Limit(Error),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Error {
        match r {
            Refusal::LockHeld => Error::LockHeld,
            Refusal::LockLost | Refusal::SessionLost => Error::LockLost,
            Refusal::VersionMismatch { expected, current } => {
                Error::VersionMismatch { expected, current }
            }
            Refusal::Limit(e) => e,
        }
    }
}

/// A failure of the embedded store itself, never of the request.
#[derive(Debug, thiserror::Error)]
pub(super) enum Fault {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },

    /// redb could not begin, read, write or commit.
    #[error("{0}")]
    Storage(#[source] redb::Error),

    /// A stored record does not decode: the file is damaged (or was written
    /// by a newer format than this build reads).
    #[error("corrupt session record: {0}")]
    Corrupt(#[source] prost::DecodeError),

    #[error("cannot start the store thread: {0}")]
    Spawn(#[source] std::io::Error),

    /// The actor thread is gone, so nothing can be written any more.
    #[error("the store thread stopped")]
    Stopped,

    /// A write failed on the file (a full disk, an I/O error) and redb
    /// refuses everything until it is opened again; the store retries that.
    #[error("the store file is being opened again after a failed write")]
    Closed,
}

impl Fault {
    /// Whether redb refuses everything after this fault until the database
    /// is opened again (`PreviousIo`: an I/O failure poisons the handle).
    pub(super) fn closes_file(&self) -> bool {
        matches!(
            self,
            Fault::Storage(
                redb::Error::Io(_)
                    | redb::Error::PreviousIo
                    | redb::Error::Backend(_)
                    | redb::Error::DatabaseClosed
            )
        )
    }

    /// What every command of a batch that failed is told. The batch was
    /// rolled back, so none of its writes happened and a retry is safe:
    /// STORE_UNAVAILABLE for all of them, whatever the fault (a corrupt
    /// record met inside a write included).
    pub(super) fn rolled_back(&self) -> Error {
        Error::StoreUnavailable(self.to_string())
    }
}

/// Storage failures are STORE_UNAVAILABLE (safe to retry); a corrupt record
/// or a thread that cannot start is INTERNAL (never the caller's fault, and a
/// retry does not help).
impl From<Fault> for Error {
    fn from(f: Fault) -> Error {
        match f {
            Fault::Open { .. } | Fault::Storage(_) | Fault::Stopped | Fault::Closed => {
                Error::StoreUnavailable(f.to_string())
            }
            Fault::Corrupt(_) | Fault::Spawn(_) => Error::Internal(f.to_string()),
        }
    }
}

/// The redb error types the steps meet, each a storage failure.
macro_rules! storage_fault {
    ($($t:ty),*) => {$(
        impl From<$t> for Fault {
            fn from(e: $t) -> Fault {
                Fault::Storage(e.into())
            }
        }
    )*};
}

storage_fault!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<prost::DecodeError> for Fault {
    fn from(e: prost::DecodeError) -> Fault {
        Fault::Corrupt(e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use prost::Message;
    use tonic::Code;

    use super::*;

    fn corrupt() -> Fault {
        Fault::from(prost_types::Timestamp::decode(&[0xff][..]).unwrap_err())
    }

    #[test]
    fn storage_failures_are_store_unavailable() {
        let faults = [
            Fault::from(redb::StorageError::Corrupted("bad page".into())),
            Fault::from(redb::TransactionError::WouldBlock),
            Fault::from(redb::TableError::TableIsMultimap("sessions".into())),
            Fault::from(redb::CommitError::TransactionPoisoned),
            Fault::Stopped,
            Fault::Closed,
        ];
        for f in faults {
            let (code, reason) = crate::status::code_and_reason(&Error::from(f));
            assert_eq!((code, reason), (Code::Unavailable, "STORE_UNAVAILABLE"));
        }
    }

    #[test]
    fn only_io_failures_close_the_file() {
        let io = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(Fault::from(redb::StorageError::Io(io())).closes_file());
        assert!(
            Fault::from(redb::CommitError::Storage(redb::StorageError::Io(io()))).closes_file()
        );
        assert!(Fault::from(redb::StorageError::PreviousIo).closes_file());
        assert!(!Fault::from(redb::TransactionError::WouldBlock).closes_file());
        assert!(!corrupt().closes_file());
        assert!(!Fault::Closed.closes_file());
    }

    #[test]
    fn a_corrupt_record_is_internal_and_keeps_its_source() {
        let f = corrupt();
        assert!(f.source().is_some());
        assert!(f.to_string().starts_with("corrupt session record: "));
        let (code, reason) = crate::status::code_and_reason(&Error::from(f));
        assert_eq!((code, reason), (Code::Internal, "INTERNAL"));
    }

    #[test]
    fn a_failed_batch_is_store_unavailable_for_every_fault() {
        let e = corrupt().rolled_back();
        assert_eq!(crate::status::code_and_reason(&e).1, "STORE_UNAVAILABLE");
        assert!(e.to_string().contains("corrupt session record"));
    }

    #[test]
    fn refusals_keep_their_codes_and_reasons() {
        let cases = [
            (Refusal::LockHeld, Code::FailedPrecondition, "LOCK_HELD"),
            (Refusal::LockLost, Code::FailedPrecondition, "LOCK_LOST"),
            (Refusal::SessionLost, Code::FailedPrecondition, "LOCK_LOST"),
            (
                Refusal::VersionMismatch {
                    expected: 3,
                    current: 5,
                },
                Code::Aborted,
                "VERSION_MISMATCH",
            ),
            (
                Refusal::Limit(Error::LimitExceeded {
                    limit: "max_fields",
                    message: "too many".into(),
                }),
                Code::InvalidArgument,
                "LIMIT_EXCEEDED",
            ),
        ];
        for (refusal, code, reason) in cases {
            assert_eq!(
                crate::status::code_and_reason(&Error::from(refusal)),
                (code, reason)
            );
        }
    }

    #[test]
    fn an_outcome_answers_done_or_refused() {
        let done: Outcome<u64> = Ok(7).into();
        assert!(done.is_done());
        assert_eq!(done.into_result().unwrap(), 7);
        let refused: Outcome<u64> = Err(Refusal::LockHeld).into();
        assert!(!refused.is_done());
        assert!(matches!(refused.into_result(), Err(Error::LockHeld)));
    }
}
