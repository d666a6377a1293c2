//! The page token of ListSessions and PurgeSessions: the store's cursor as
//! opaque text. `s<digits>` is a Redis SCAN cursor, `c<slot>.<digits>` a
//! Redis Cluster one (a master, by a slot it owns, and the SCAN cursor on
//! it), `a<hex>` the last id an embedded listing returned; a token of another shape, or of the other
//! backend, is INVALID_ARGUMENT / INVALID_PAGE_TOKEN.

use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::session::{Cursor, MAX_ID_BYTES};

/// The hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;

pub fn encode(cursor: Option<&Cursor>) -> String {
    match cursor {
        None | Some(Cursor::Start) => String::new(),
        Some(Cursor::Scan(c)) => format!("s{c}"),
        Some(Cursor::Shard { slot, scan }) => format!("c{slot}.{scan}"),
        Some(Cursor::After(id)) => {
            let mut out = String::with_capacity(1 + 2 * id.len());
            out.push('a');
            for b in id.bytes() {
                let _ = write!(out, "{b:02x}");
            }
            out
        }
    }
}

/// The cursor of a page token; its cost is bounded by its length, which is
/// checked first.
pub fn decode(token: &str) -> Result<Cursor> {
    if token.is_empty() {
        return Ok(Cursor::Start);
    }
    if token.len() > 1 + 2 * MAX_ID_BYTES {
        return Err(Error::bad_page_token());
    }
    let (kind, rest) = token
        .split_at_checked(1)
        .ok_or_else(Error::bad_page_token)?;
    match kind {
        "s" => match rest.parse::<u64>() {
            Ok(c) if c != 0 && rest.bytes().all(|b| b.is_ascii_digit()) => Ok(Cursor::Scan(c)),
            _ => Err(Error::bad_page_token()),
        },
        "c" => {
            let (slot, scan) = rest.split_once('.').ok_or_else(Error::bad_page_token)?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(slot) || !digits(scan) {
                return Err(Error::bad_page_token());
            }
            match (slot.parse::<u16>(), scan.parse::<u64>()) {
                (Ok(slot), Ok(scan)) if slot < SLOTS => Ok(Cursor::Shard { slot, scan }),
                _ => Err(Error::bad_page_token()),
            }
        }
        "a" if !rest.is_empty() && rest.len() % 2 == 0 => {
            let bytes = (0..rest.len())
                .step_by(2)
                .map(|i| {
                    rest.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(Error::bad_page_token)?;
            String::from_utf8(bytes)
                .map(Cursor::After)
                .map_err(|_| Error::bad_page_token())
        }
        _ => Err(Error::bad_page_token()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        for c in [
            Cursor::Scan(1),
            Cursor::Scan(u64::MAX),
            Cursor::Shard { slot: 0, scan: 0 },
            Cursor::Shard {
                slot: 16383,
                scan: u64::MAX,
            },
            Cursor::After("user-42/é".into()),
        ] {
            assert_eq!(decode(&encode(Some(&c))).unwrap(), c);
        }
        assert_eq!(decode("").unwrap(), Cursor::Start);
        assert_eq!(encode(None), "");
        for bad in [
            "x", "s", "s0", "s-1", "s+1", "a", "a0", "azz", "aff", "sé", "é", "c", "c1", "c.1",
            "c1.", "c16384.1", "c1.-1", "c+1.1", "c1.2.3", "c1.x",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert!(decode(&format!("a{}", "61".repeat(MAX_ID_BYTES + 1))).is_err());
    }
}
