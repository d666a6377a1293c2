//! The pub/sub channels the scripts publish on: invalidations (every write
//! and delete) and wake-ups (a lock passed on to a waiter of another
//! instance).
//!
//! On one server (or Sentinel's master) there are two plain channels per
//! use: `<prefix>:invalidate`, and `<prefix>:wake:<instance>` for each
//! instance. On Redis Cluster a script may only publish where its session
//! lives, and a plain PUBLISH is sent over the cluster bus to every node,
//! so each slot has channels of its own, published with SPUBLISH (sharded
//! pub/sub, Redis 7.0): `<prefix>:{<tag>}:i` for invalidations and
//! `<prefix>:{<tag>}:w:<instance>` for an instance's wake-ups, `<tag>` a
//! short tag of that slot (`slots::tags`). A message then stays within its
//! shard (the master and its replicas), and an instance subscribes on each
//! master to the channels of the slots it owns (`shards`): a shard whose
//! subscription is lost is a shard whose invalidations may be missed, and
//! only its sessions stop being read from the cache.
//!
//! The scripts learn which command to use from the line
//! `local PUBLISH = '<command>'` put before the prelude (`publish`), and
//! the channel names from their arguments: a waiter's queue entry keeps
//! its instance's wake channel of the session's slot, so a release
//! publishes on it as is.

use super::slots::{self, SLOTS};

pub(super) enum Channels {
    Plain {
        wake: String,
        invalidate: String,
    },
    /// Indexed by slot.
    Sharded {
        wake: Box<[String]>,
        invalidate: Box<[String]>,
    },
}

impl Channels {
    /// The channels of `instance` under `prefix`; `sharded` on a cluster.
    pub(super) fn new(prefix: &str, instance: &str, sharded: bool) -> Channels {
        if !sharded {
            return Channels::Plain {
                wake: format!("{prefix}:wake:{instance}"),
                invalidate: format!("{prefix}:invalidate"),
            };
        }
        let tags = slots::tags();
        Channels::Sharded {
            wake: tags
                .iter()
                .map(|t| format!("{prefix}:{{{t}}}:w:{instance}"))
                .collect(),
            invalidate: tags.iter().map(|t| format!("{prefix}:{{{t}}}:i")).collect(),
        }
    }

    pub(super) fn sharded(&self) -> bool {
        matches!(self, Channels::Sharded { .. })
    }

    /// The command the scripts publish with.
    pub(super) fn publish(&self) -> &'static str {
        if self.sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// This instance's wake-up channel for sessions of `slot` (the slot is
    /// not read on one server).
    pub(super) fn wake(&self, slot: u16) -> &str {
        match self {
            Channels::Plain { wake, .. } => wake,
            Channels::Sharded { wake, .. } => pick(wake, slot),
        }
    }

    /// The invalidation channel of sessions of `slot`.
    pub(super) fn invalidate(&self, slot: u16) -> &str {
        match self {
            Channels::Plain { invalidate, .. } => invalidate,
            Channels::Sharded { invalidate, .. } => pick(invalidate, slot),
        }
    }
}

/// The channel of `slot`; slots come from `slots::slot`, always in range.
fn pick(channels: &[String], slot: u16) -> &str {
    channels
        .get(usize::from(slot % SLOTS))
        .map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_channels_live_in_their_slot() {
        let c = Channels::new("sd", "inst1", true);
        assert_eq!(c.publish(), "SPUBLISH");
        for s in [0, 1, 777, 16383] {
            for name in [c.wake(s), c.invalidate(s)] {
                let tag = name.split_once('{').unwrap().1.split_once('}').unwrap().0;
                assert_eq!(slots::slot(tag.as_bytes()), s, "{name}");
                assert!(name.starts_with("sd:{"), "{name}");
            }
            assert!(c.wake(s).ends_with(":w:inst1"));
            assert!(c.invalidate(s).ends_with(":i"));
        }
    }

    #[test]
    fn plain_channels_are_the_same_for_every_slot() {
        let c = Channels::new("sd", "inst1", false);
        assert_eq!(c.publish(), "PUBLISH");
        assert_eq!(c.wake(5), "sd:wake:inst1");
        assert_eq!(c.wake(9000), "sd:wake:inst1");
        assert_eq!(c.invalidate(3), "sd:invalidate");
    }
}
