//! The operators' calls on the embedded store: inspect a session and force
//! its lock open (commands to the actor, which owns the lock table), and
//! list the sessions of a namespace by id prefix (a range read of the
//! `sessions` table, whose keys `namespace 0x00 id` sort by namespace, then
//! id: a prefix of ids is one contiguous range, and the page token is the
//! last id listed).

use std::ops::Bound;

use redb::ReadableDatabase;

use super::actor::Command;
use super::outcome::Fault;
use super::tables::SESSIONS;
use super::{EmbeddedStore, encode_key, record};
use crate::error::{Error, Result};
use crate::session::{Cursor, Inspection, Page, SessionKey};
use crate::store::now_ms;

impl EmbeddedStore {
    pub async fn inspect(&self, key: &SessionKey) -> Result<Inspection> {
        self.call(|reply| Command::Inspect {
            key: encode_key(key),
            reply,
        })
        .await
    }

    /// The fencing token of the holder whose lock was released; `None` when
    /// nobody held it.
    pub async fn force_unlock(&self, key: &SessionKey) -> Result<Option<u64>> {
        self.call(|reply| Command::ForceUnlock {
            key: encode_key(key),
            reply,
        })
        .await
    }

    /// A page of the live sessions' ids under `prefix` in `namespace`, in
    /// id order, after `cursor`.
    pub async fn list(
        &self,
        namespace: &str,
        prefix: &str,
        cursor: &Cursor,
        size: usize,
    ) -> Result<Page> {
        let mut head = namespace.as_bytes().to_vec();
        head.push(0);
        let mut start = head.clone();
        let lower = match cursor {
            Cursor::Start => {
                start.extend_from_slice(prefix.as_bytes());
                Bound::Included(start)
            }
            Cursor::After(last) if last.starts_with(prefix) => {
                start.extend_from_slice(last.as_bytes());
                Bound::Excluded(start)
            }
            Cursor::After(_) | Cursor::Scan(_) | Cursor::Shard { .. } => {
                return Err(Error::bad_page_token());
            }
        };
        Ok(self.range(&head, prefix, lower, size)?)
    }

    fn range(
        &self,
        head: &[u8],
        prefix: &str,
        lower: Bound<Vec<u8>>,
        size: usize,
    ) -> Result<Page, Fault> {
        let txn = self.file.get()?.begin_read()?;
        let table = txn.open_table(SESSIONS)?;
        let lower = lower.as_ref().map(Vec::as_slice);
        let now = now_ms();
        let mut ids = Vec::new();
        for entry in table.range::<&[u8]>((lower, Bound::Unbounded))? {
            let (key, value) = entry?;
            let Some(id) = key.value().strip_prefix(head) else {
                break;
            };
            if !id.starts_with(prefix.as_bytes()) {
                break;
            }
            if ids.len() == size {
                // One more exists: the next page starts after the last.
                let next = ids.last().cloned().map(Cursor::After);
                return Ok(Page { ids, next });
            }
            if record::decode(value.value())?.expires_ms > now {
                ids.push(String::from_utf8_lossy(id).into_owned());
            }
        }
        Ok(Page { ids, next: None })
    }
}
