//! The invalidation feed and wake-ups: one pub/sub connection per instance,
//! watched by a heartbeat of its own.

use std::time::Duration;

use futures::StreamExt;

use super::Inner;
use super::fault::Fault;
use super::wire::decode;
use crate::session::SessionKey;
use crate::store::{FeedEvent, FeedSender};

/// How often an instance checks its own subscription, and how long a
/// silence makes it declare the invalidation feed lost.
const FEED_HEARTBEAT: Duration = Duration::from_secs(1);
const FEED_SILENCE: Duration = Duration::from_secs(3);

/// One connection, two channels: this instance's wake-up channel (wakes the
/// local waiter a message names) and the invalidation channel (forwarded to
/// the cache as `FeedEvent`s). Reports `Down` when the connection drops and
/// `Up` once subscribed again; reconnects every 200 ms until it is. On one
/// server or Sentinel's master; a cluster has a subscription per shard
/// (`shards`).
pub(super) async fn subscribe(inner: std::sync::Weak<Inner>, mut feed: FeedSender) {
    let Some((wake, invalidate, mut switches)) = inner.upgrade().map(|i| {
        (
            i.channels.wake(0).to_owned(),
            i.channels.invalidate(0).to_owned(),
            i.target.switches(),
        )
    }) else {
        return;
    };
    let mut up = false;
    loop {
        let result: Result<(), Fault> = async {
            let Some(client) = inner
                .upgrade()
                .map(|i| async move { i.target.client().await })
            else {
                return Ok(());
            };
            let client = client.await?;
            switches.mark_unchanged();
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&[&wake, &invalidate]).await?;
            up = true;
            feed.send(FeedEvent::Up);
            let mut messages = pubsub.on_message();
            // `heartbeat` publishes here every FEED_HEARTBEAT: silence means
            // a connection that died without telling us.
            // A master switch (Sentinel) ends the subscription too: it may
            // be on the demoted master, which would still hear what the new
            // one replicates to it, but the cache must not carry entries
            // across the switch.
            loop {
                let msg = tokio::select! {
                    msg = tokio::time::timeout(FEED_SILENCE, messages.next()) => msg,
                    Ok(()) = switches.changed() => break,
                };
                let Ok(Some(msg)) = msg else { break };
                let Some(inner) = inner.upgrade() else {
                    return Ok(());
                };
                feed.flush();
                let payload: Vec<u8> = msg.get_payload().unwrap_or_default();
                if msg.get_channel_name() == wake {
                    inner.waiters.wake(&String::from_utf8_lossy(&payload));
                } else if let Some((key, floor)) = parse_invalidation(&payload) {
                    feed.send(FeedEvent::Invalidate(key, floor));
                }
            }
            Ok(())
        }
        .await;
        if inner.strong_count() == 0 {
            return;
        }
        if up {
            up = false;
            feed.send(FeedEvent::Down);
        }
        if let Err(e) = result {
            tracing::debug!(error = %e, "subscription lost; reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `"<version floor> <ns>/<id>"`, percent-encoded as the key's hash tag.
pub(super) fn parse_invalidation(payload: &[u8]) -> Option<(SessionKey, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (floor, subject) = text.split_once(' ')?;
    let (ns, id) = subject.split_once('/')?;
    let key = SessionKey::new(&decode(ns)?, &decode(id)?).ok()?;
    Some((key, floor.parse().ok()?))
}

/// Publishes an empty message on this instance's wake-up channel every
/// `FEED_HEARTBEAT`, so the subscriber notices a silently dead connection.
pub(super) async fn heartbeat(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(FEED_HEARTBEAT).await;
        let Some(inner) = inner.upgrade() else { return };
        let _: Result<i64, Fault> = inner
            .query(redis::cmd("PUBLISH").arg(inner.channels.wake(0)).arg(""))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::wire::encode_into;

    #[test]
    fn invalidations_name_the_key_and_the_floor() {
        let enc = |s: &str| {
            let mut out = String::new();
            encode_into(&mut out, s);
            out
        };
        let (key, floor) =
            parse_invalidation(format!("7 {}/{}", enc("default"), enc("a/b c")).as_bytes())
                .unwrap();
        assert_eq!((&*key.namespace, &*key.id, floor), ("default", "a/b c", 7));
        assert!(parse_invalidation(b"7 no-slash").is_none());
        assert!(parse_invalidation(b"x default/a").is_none());
    }
}
