//! Field operations: the small, commutable changes an UpdateSession can make
//! to one field from its stored value, in the write's atomic step
//! (`increment`, `append` to a bounded list, `set_if_absent`). The embedded
//! store applies them here; `store/redis/update.lua` does the same in Lua,
//! with the same rules and the same refusals.
//!
//! Two encodings every client can read:
//! - an integer field holds an optional `-` and 1 to 19 ASCII digits, its
//!   value in the signed 64-bit range; an increment writes it back without
//!   leading zeros (`0`, never `-0`);
//! - a list field holds the protobuf encoding of
//!   `sessiond.v1.FieldList { repeated bytes entries = 1; }`: per entry the
//!   byte 0x0A, the entry's length as a varint, and its bytes, oldest first
//!   (an empty value is an empty list). Appending is concatenation; keeping
//!   the last N drops whole entries from the front.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Fields, printable};
use crate::error::{Error, InvalidReason};

/// One field operation of an UpdateSession.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOp {
    pub field: String,
    pub kind: OpKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Adds to the integer the field holds (absent: 0).
    Increment(i64),
    /// Appends an entry to the list the field holds (absent: empty) and keeps
    /// the last `keep_last` entries (at least 1).
    Append { value: Bytes, keep_last: u32 },
    /// Sets the field unless it exists.
    SetIfAbsent(Bytes),
}

impl FieldOp {
    /// The bytes of the request the op carries besides its name.
    pub fn value_len(&self) -> usize {
        match &self.kind {
            OpKind::Increment(_) => 0,
            OpKind::Append { value, .. } | OpKind::SetIfAbsent(value) => value.len(),
        }
    }
}

/// Why an op was refused by the stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpRefusal {
    NotInteger,
    Overflow,
    NotList,
}

impl OpRefusal {
    /// The error a caller gets for an op on `field`.
    pub fn error(self, field: &str) -> Error {
        let shown = printable(field);
        let (reason, message) = match self {
            OpRefusal::NotInteger => (
                InvalidReason::FieldNotInteger,
                format!(
                    "field `{shown}` does not hold a decimal integer in the signed 64-bit range; increment only fields that hold one"
                ),
            ),
            OpRefusal::Overflow => (
                InvalidReason::IntegerOverflow,
                format!("incrementing field `{shown}` would leave the signed 64-bit range"),
            ),
            OpRefusal::NotList => (
                InvalidReason::FieldNotList,
                format!(
                    "field `{shown}` does not hold a list (sessiond.v1.FieldList); append only to fields that hold one"
                ),
            ),
        };
        Error::FieldRefused {
            reason,
            field: field.to_owned(),
            message,
        }
    }
}

/// Applies `ops` (names distinct, and distinct from the mutation's set and
/// deleted names) to `fields`, in order; returns each field's new value.
/// On a refusal `fields` may be half changed: callers apply to a copy.
pub fn apply_ops(fields: &mut Fields, ops: &[FieldOp]) -> Result<Vec<Bytes>, (OpRefusal, usize)> {
    let mut values = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let current = fields.get(&op.field);
        let new = match &op.kind {
            OpKind::Increment(delta) => {
                let n = match current {
                    Some(v) => parse_int(v).ok_or((OpRefusal::NotInteger, i))?,
                    None => 0,
                };
                let sum = n.checked_add(*delta).ok_or((OpRefusal::Overflow, i))?;
                Bytes::from(sum.to_string())
            }
            OpKind::Append { value, keep_last } => {
                let list = current.map(|v| v.as_ref()).unwrap_or_default();
                append(list, value, *keep_last).ok_or((OpRefusal::NotList, i))?
            }
            OpKind::SetIfAbsent(value) => match current {
                Some(v) => v.clone(),
                None => value.clone(),
            },
        };
        fields.insert(op.field.clone(), new.clone());
        values.push(new);
    }
    Ok(values)
}

/// The integer a field holds: `-?[0-9]{1,19}` within i64.
pub fn parse_int(v: &[u8]) -> Option<i64> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// The offsets at which the entries of a list start, or `None` if `list` is
/// not one. O(entries).
fn entry_starts(list: &[u8]) -> Option<Vec<usize>> {
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos < list.len() {
        starts.push(pos);
        if list.get(pos) != Some(&0x0A) {
            return None;
        }
        let (len, used) = varint(list.get(pos + 1..)?)?;
        pos = (pos + 1 + used).checked_add(usize::try_from(len).ok()?)?;
    }
    (pos == list.len()).then_some(starts)
}

/// A varint of at most 5 bytes (lengths below 32 GiB) and the bytes it used.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, byte) in b.iter().take(5).enumerate() {
        n |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// `list` with `entry` appended, keeping the last `keep_last` entries.
fn append(list: &[u8], entry: &[u8], keep_last: u32) -> Option<Bytes> {
    let starts = entry_starts(list)?;
    // Whole entries dropped from the front: all but the last keep_last - 1.
    let keep_old = (keep_last as usize).saturating_sub(1);
    let drop = starts.len().saturating_sub(keep_old);
    let from = match drop {
        0 => 0,
        _ => starts.get(drop).copied().unwrap_or(list.len()),
    };
    let kept = list.get(from..)?;
    let mut out = BytesMut::with_capacity(kept.len() + entry.len() + 6);
    out.put_slice(kept);
    out.put_u8(0x0A);
    let mut n = entry.len() as u64;
    while n >= 0x80 {
        out.put_u8((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
    out.put_slice(entry);
    Some(out.freeze())
}

/// The entries of a list field (as clients decode it), for tests and tools.
pub fn list_entries(list: &[u8]) -> Option<Vec<&[u8]>> {
    let starts = entry_starts(list)?;
    starts
        .iter()
        .map(|&s| {
            let (len, used) = varint(list.get(s + 1..)?)?;
            list.get(s + 1 + used..s + 1 + used + usize::try_from(len).ok()?)
        })
        .collect()
}

#[cfg(test)]
mod tests;
