//! The replies of WatchSession's scripts (watch_begin.lua, watch_read.lua)
//! and the entries of a session's log (see watch.lua for their fields).

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;

use super::{Fault, Parts, Reply, parse, session, text};
use crate::watch::{Begin, Change, Entry, Logged, Pos};

/// watch_begin.lua: `{'OK', now's position, 0, 0, fence, lease end,
/// entries, data...}`. The log handed back begins after its last gap.
pub fn watch_begin(value: &Value) -> Result<Reply<Begin>, Fault> {
    parse("watch_begin", value, |r| match r.status {
        b"OK" => {
            let [fence, until, entries, data @ ..] = r.rest else {
                return Err(r.malformed(format_args!("no lock or log")));
            };
            // A lock granted before locks kept their end has none: 0, so
            // the follower asks for it (InspectSession) at once.
            let lock = match (fence, until) {
                (Value::Nil, _) => None,
                (f, Value::Nil) => Some((number(r, f, "the fence")?, 0)),
                (f, e) => Some((number(r, f, "the fence")?, number(r, e, "the lease's end")?)),
            };
            let log = log(r, entries)?;
            let log = match log.iter().rposition(|e| e.is_none()) {
                Some(gap) => log.into_iter().skip(gap + 1).flatten().collect(),
                None => log.into_iter().flatten().collect(),
            };
            Ok(Begin {
                session: session(data)?,
                lock: lock.map(|(f, e)| (f, e as i64)),
                log,
                last: id(r, r.a)?,
            })
        }
        _ => Err(r.unknown()),
    })
}

/// watch_read.lua: `{'OK', 0, 0, 0, entries}`, or `{'GAP', ...}`; a write
/// logged as too large is a gap too. `None`: a gap.
pub fn watch_read(value: &Value) -> Result<Reply<Option<Vec<Entry>>>, Fault> {
    parse("watch_read", value, |r| match r.status {
        b"OK" => {
            let [entries, ..] = r.rest else {
                return Err(r.malformed(format_args!("no entries")));
            };
            Ok(log(r, entries)?.into_iter().collect())
        }
        b"GAP" => Ok(None),
        _ => Err(r.unknown()),
    })
}

/// The entries of an XRANGE, each `None` where a write was too large to log.
fn log(r: &Parts<'_>, entries: &Value) -> Result<Vec<Option<Entry>>, Fault> {
    let Value::Array(entries) = entries else {
        return Err(r.malformed(format_args!("the log is {entries:?}")));
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Value::Array(parts) = e else {
            return Err(r.malformed(format_args!("a log entry is {e:?}")));
        };
        let [at, Value::Array(fields)] = parts.as_slice() else {
            return Err(r.malformed(format_args!("a log entry is {parts:?}")));
        };
        out.push(entry(r, id(r, at)?, fields)?);
    }
    Ok(out)
}

fn entry(r: &Parts<'_>, pos: Pos, fields: &[Value]) -> Result<Option<Entry>, Fault> {
    let mut kind: &[u8] = b"";
    let (mut v, mut f, mut e) = (0, 0, 0);
    let (mut created, mut replaced) = (false, false);
    let mut set = Vec::new();
    let mut removed = Vec::new();
    for pair in fields.chunks(2) {
        let [name, value] = pair else {
            return Err(r.malformed(format_args!("an odd log entry")));
        };
        let (Some(name), Some(value)) = (text(name), text(value)) else {
            return Err(r.malformed(format_args!("a log entry's field is not text")));
        };
        let num = || {
            std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| r.malformed(format_args!("a log entry's number is {value:?}")))
        };
        match name {
            b"k" => kind = value,
            b"v" => v = num()?,
            b"f" => f = num()?,
            b"e" => e = num()?,
            b"n" => created = value == b"1",
            b"r" => replaced = value == b"1",
            [b'f', b':', field @ ..] => set.push((utf8(r, field)?, Bytes::copy_from_slice(value))),
            [b'x', b':', field @ ..] => removed.push(utf8(r, field)?),
            _ => {}
        }
    }
    let logged = match kind {
        b"c" => {
            set.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            removed.sort_unstable();
            Logged::Changed(Arc::new(Change {
                version: v,
                created,
                set,
                removed,
                replaced,
                expires_ms: e as i64,
            }))
        }
        b"g" => return Ok(None),
        b"d" => Logged::Deleted { version: v },
        b"a" => Logged::Acquired {
            fence: f,
            lease_expires_ms: e as i64,
        },
        b"r" => Logged::Released { fence: f },
        b"o" => Logged::Forced { fence: f },
        b"b" => Logged::Began,
        other => {
            return Err(r.malformed(format_args!(
                "a log entry of kind {}",
                String::from_utf8_lossy(other)
            )));
        }
    };
    Ok(Some(Entry { pos, logged }))
}

fn utf8(r: &Parts<'_>, b: &[u8]) -> Result<String, Fault> {
    String::from_utf8(b.to_vec())
        .map_err(|_| r.malformed(format_args!("a field name is not UTF-8")))
}

/// A stream id, `<ms>-<seq>`.
fn id(r: &Parts<'_>, v: &Value) -> Result<Pos, Fault> {
    text(v)
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.split_once('-'))
        .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)))
        .ok_or_else(|| r.malformed(format_args!("a stream id is {v:?}")))
}

/// A number the script sent as text.
fn number(r: &Parts<'_>, v: &Value, what: &str) -> Result<u64, Fault> {
    text(v)
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| r.malformed(format_args!("{what} is {v:?}")))
}
