//! The record of a session in the `sessions` table: the embedded store's file
//! format.
//!
//! It is the store's own type, not the API's `pb::Session`, so that a change
//! of the API never changes what is on disk. Its tags and wire types are the
//! ones `pb::Session` had when the store first wrote records with it, so
//! every file written since stays readable:
//!
//! ```proto
//! message Record {
//!   reserved 1;                      // the API's session_id, never written
//!   repeated Field fields = 2;       // wire-identical to map<string, bytes>
//!   uint64 version = 3;
//!   Time created = 4;
//!   Time updated = 5;
//!   Time expires = 6;
//! }
//! message Field { string name = 1; bytes value = 2; }
//! message Time { int64 seconds = 1; int32 nanos = 2; } // = google.protobuf.Timestamp
//! ```
//!
//! **Change it only together with a migration of existing files**, and keep
//! the test on `tests/fixtures/embedded-v1.redb` (a file written by the first
//! format) passing.

use bytes::Bytes;
use prost::Message;

use crate::session::Session;

/// A session as stored. Times are milliseconds since the Unix epoch, split
/// as `google.protobuf.Timestamp` splits them.
#[derive(Clone, PartialEq, Message)]
pub(super) struct Record {
    /// Sorted by name, as [`crate::session::Fields`] keeps them. A protobuf
    /// map is encoded as exactly these entries, so records written as a map
    /// decode here (a repeated name: the later one wins, as in a map).
    #[prost(message, repeated, tag = "2")]
    pub fields: Vec<Field>,
    #[prost(uint64, tag = "3")]
    pub version: u64,
    #[prost(message, optional, tag = "4")]
    pub created: Option<Time>,
    #[prost(message, optional, tag = "5")]
    pub updated: Option<Time>,
    #[prost(message, optional, tag = "6")]
    pub expires: Option<Time>,
}

/// One field: the entry message of a `map<string, bytes>`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct Field {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// A time, laid out as `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub(super) struct Time {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Time {
    fn from_ms(ms: i64) -> Time {
        Time {
            seconds: ms.div_euclid(1000),
            // rem_euclid(1000) * 1_000_000 < 1e9: fits an i32.
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        }
    }

    /// Saturating: a damaged record must not overflow (and panic in a debug
    /// build) on a read path.
    fn ms(self) -> i64 {
        self.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(self.nanos) / 1_000_000)
    }
}

/// Milliseconds of an optional time (0 when absent, as the first format read it).
fn ms(t: Option<Time>) -> i64 {
    t.map_or(0, Time::ms)
}

impl From<&Session> for Record {
    fn from(s: &Session) -> Record {
        Record {
            fields: s
                .fields
                .iter()
                .map(|(name, value)| Field {
                    name: name.to_owned(),
                    value: value.clone(),
                })
                .collect(),
            version: s.version,
            created: Some(Time::from_ms(s.created_ms)),
            updated: Some(Time::from_ms(s.updated_ms)),
            expires: Some(Time::from_ms(s.expires_ms)),
        }
    }
}

impl From<Record> for Session {
    fn from(r: Record) -> Session {
        Session {
            fields: r.fields.into_iter().map(|f| (f.name, f.value)).collect(),
            version: r.version,
            created_ms: ms(r.created),
            updated_ms: ms(r.updated),
            expires_ms: ms(r.expires),
        }
    }
}

/// The bytes stored for `s`.
pub(super) fn encode(s: &Session) -> Vec<u8> {
    Record::from(s).encode_to_vec()
}

/// The session stored as `raw`.
pub(super) fn decode(raw: &[u8]) -> Result<Session, prost::DecodeError> {
    Ok(Record::decode(raw)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            fields: [
                ("name".to_owned(), Bytes::from_static(b"Ada")),
                ("empty".to_owned(), Bytes::new()),
            ]
            .into_iter()
            .collect(),
            version: 2,
            created_ms: 1_795_449_651_883,
            updated_ms: 1_795_449_651_945,
            expires_ms: 4_949_049_651_945,
        }
    }

    /// `session()` as the first format (`pb::Session` with an empty id)
    /// encoded it, with the map's entries in name order.
    const FIRST_FORMAT: &str = concat!(
        "12070a05656d707479",           // 2: {1: "empty"} (the empty value omitted)
        "120b0a046e616d651203416461",   // 2: {1: "name", 2: "Ada"}
        "1802",                         // 3: 2
        "220c08b3c691d80610c08586a503", // 4: {1: 1795449651, 2: 883000000}
        "2a0c08b3c691d80610c09ccec203", // 5: {1: 1795449651, 2: 945000000}
        "320c08b382f2b71210c09ccec203", // 6: {1: 4949049651, 2: 945000000}
    );

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn encodes_as_the_first_format_did() {
        assert_eq!(hex(&encode(&session())), FIRST_FORMAT);
    }

    #[test]
    fn decodes_the_first_format() {
        assert_eq!(decode(&unhex(FIRST_FORMAT)).unwrap(), session());
    }

    #[test]
    fn ignores_a_session_id_and_lets_a_repeated_name_win_as_a_map_does() {
        let mut raw = unhex("0a0369676e"); // 1: "ign"
        raw.extend(unhex(FIRST_FORMAT));
        raw.extend(unhex("12090a046e616d65120142")); // 2: {1: "name", 2: "B"}
        let s = decode(&raw).unwrap();
        assert_eq!(s.fields.get("name").unwrap().as_ref(), b"B");
        assert_eq!(s.fields.len(), 2);
        assert_eq!(s.version, 2);
    }

    #[test]
    fn times_round_trip_before_and_after_the_epoch() {
        for ms in [0, 1, 999, 1000, -1, -1001, 1_795_449_651_883] {
            assert_eq!(Time::from_ms(ms).ms(), ms, "{ms}");
        }
        assert_eq!(ms(None), 0);
        let huge = Time {
            seconds: i64::MAX,
            nanos: 999_999_999,
        };
        assert_eq!(huge.ms(), i64::MAX);
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_panic() {
        assert!(decode(&[0x12, 0x05, 0x0a]).is_err());
        assert!(decode(&[0xff]).is_err());
    }
}
