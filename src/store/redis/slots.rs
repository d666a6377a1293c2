//! Redis Cluster's key slots, as sessiond needs them: the slot of a hash
//! tag (CRC16/XMODEM mod 16384, as Redis computes it), and short tags that
//! land in a given slot, for keys and shard channels that must sit in a
//! chosen slot (the data-loss markers, one per `MARKER_SLOTS` slot; the
//! feed's channels, a pair per slot).

/// Redis Cluster's slot count.
pub(super) const SLOTS: u16 = 16384;

/// The slot a key with hash tag `tag` (or, without a tag, named `tag`)
/// lives in.
pub(super) fn slot(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in tag {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS
}

/// A short tag whose slot is `slot` (`None` for a slot out of range).
/// CRC16 spreads short strings over every slot, so the search ends within
/// a few ten thousand tries.
pub(super) fn tag_for(slot: u16) -> Option<String> {
    if slot >= SLOTS {
        return None;
    }
    (0u32..1 << 22)
        .map(|n| format!("s{n}"))
        .find(|t| self::slot(t.as_bytes()) == slot)
}

/// A short tag for every slot: `tags()[s]` lands in slot `s`. The first
/// tag found for each, in the order of `tag_for`'s search: about 170,000
/// CRC16s of short strings (a few milliseconds) cover all 16384 slots.
pub(super) fn tags() -> Vec<String> {
    let mut tags = vec![String::new(); usize::from(SLOTS)];
    let mut missing = tags.len();
    let mut n = 0u32;
    while missing > 0 {
        let tag = format!("s{n}");
        if let Some(t) = tags.get_mut(usize::from(slot(tag.as_bytes())))
            && t.is_empty()
        {
            *t = tag;
            missing -= 1;
        }
        n += 1;
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // CLUSTER KEYSLOT answers, and the CRC16/XMODEM check value.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS);
        for s in [0, 1, 1024, 8191, 16383] {
            let tag = tag_for(s).unwrap();
            assert_eq!(slot(tag.as_bytes()), s, "{tag}");
        }
        assert_eq!(tag_for(SLOTS), None);
    }

    #[test]
    fn every_slot_has_a_tag() {
        let tags = tags();
        assert_eq!(tags.len(), usize::from(SLOTS));
        for (s, tag) in tags.iter().enumerate() {
            assert_eq!(usize::from(slot(tag.as_bytes())), s, "{tag}");
        }
        assert_eq!(tags[1024], tag_for(1024).unwrap());
    }
}
