//! WatchSession on Redis.

use std::sync::Arc;

use tokio::sync::Notify;

use super::RedisStore;
use crate::error::{Error, Result};
use crate::session::SessionKey;
use crate::watch::{Begin, Entry, Pos};

impl RedisStore {
    pub async fn watch_begin(&self, _key: &SessionKey, _notify: &Arc<Notify>) -> Result<Begin> {
        Err(Error::Internal("watch on redis: in progress".into()))
    }

    pub async fn watch_read(&self, _key: &SessionKey, _after: Pos) -> Result<Option<Vec<Entry>>> {
        Err(Error::Internal("watch on redis: in progress".into()))
    }

    pub async fn watch_keep(&self, _key: &SessionKey) -> Result<()> {
        Ok(())
    }
}
