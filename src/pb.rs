//! Code generated from `proto/sessiond/v1/*.proto`, and the encoded file
//! descriptor set that server reflection serves.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("sessiond.v1");

pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sessiond_descriptor");

/// A time in milliseconds since the Unix epoch, as the API carries it.
pub fn timestamp(ms: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    })
}

/// Milliseconds since the Unix epoch of an API time (0 when absent).
pub fn millis(t: Option<prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

impl Session {
    /// A session as the API returns it.
    pub fn from_session(id: &str, s: &crate::session::Session) -> Session {
        Session {
            session_id: id.to_owned(),
            fields: s
                .fields
                .iter()
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect(),
            version: s.version,
            created_at: timestamp(s.created_ms),
            updated_at: timestamp(s.updated_ms),
            expires_at: timestamp(s.expires_ms),
        }
    }
}
