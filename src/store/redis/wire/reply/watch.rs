//! The replies of WatchSession's scripts (watch_begin.lua, watch_read.lua)
//! and the entries of a session's log (see watch.lua for their fields).

use std::sync::Arc;

use bytes::Bytes;
use redis::Value;

use super::{Fault, Parts, Reply, parse, session, text};
use crate::watch::{Begin, Change, Entry, Logged, Pos};

/// watch_begin.lua: `{'OK', now's position, 0, 0, fence, lease end,
/// entries, data...}`.
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

/// watch_read.lua: `{'OK', 0, 0, 0, entries}`, or `{'GAP', ...}` (`None`:
/// the entries after the position are no longer all there).
pub fn watch_read(value: &Value) -> Result<Reply<Option<Vec<Entry>>>, Fault> {
    parse("watch_read", value, |r| match r.status {
        b"OK" => {
            let [entries, ..] = r.rest else {
                return Err(r.malformed(format_args!("no entries")));
            };
            Ok(Some(log(r, entries)?))
        }
        b"GAP" => Ok(None),
        _ => Err(r.unknown()),
    })
}

/// The entries of an XRANGE.
fn log(r: &Parts<'_>, entries: &Value) -> Result<Vec<Entry>, Fault> {
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

fn entry(r: &Parts<'_>, pos: Pos, fields: &[Value]) -> Result<Entry, Fault> {
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
        b"g" => Logged::Gap { version: v },
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
    Ok(Entry { pos, logged })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    fn reply(status: &str, a: Value, rest: Vec<Value>) -> Value {
        let mut items = vec![bulk(status), a, Value::Int(0), Value::Int(0)];
        items.extend(rest);
        Value::Array(items)
    }

    #[test]
    fn a_read_parses_every_kind_and_sorts_a_change() {
        let log = Value::Array(vec![
            entry(
                "5-1",
                &[
                    "k", "c", "v", "7", "n", "1", "r", "0", "e", "99", "f:b", "2", "f:a", "1",
                    "x:z", "",
                ],
            ),
            entry("5-2", &["k", "a", "f", "40", "e", "120"]),
            entry("6-0", &["k", "r", "f", "40"]),
            entry("6-1", &["k", "o", "f", "41"]),
            entry("7-0", &["k", "d", "v", "7"]),
            entry("7-1", &["k", "b"]),
        ]);
        let got = watch_read(&reply("OK", Value::Int(0), vec![log]))
            .unwrap()
            .outcome
            .unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(got[0].pos, (5, 1));
        let Logged::Changed(c) = &got[0].logged else {
            panic!("{:?}", got[0])
        };
        assert_eq!((c.version, c.created, c.expires_ms), (7, true, 99));
        let names: Vec<&str> = c.set.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(c.removed, ["z"]);
        assert_eq!(
            got[1].logged,
            Logged::Acquired {
                fence: 40,
                lease_expires_ms: 120
            }
        );
        assert_eq!(got[2].logged, Logged::Released { fence: 40 });
        assert_eq!(got[3].logged, Logged::Forced { fence: 41 });
        assert_eq!(got[4].logged, Logged::Deleted { version: 7 });
        assert_eq!(got[5].logged, Logged::Began);
    }

    #[test]
    fn gaps_and_bad_replies() {
        assert!(
            watch_read(&reply("GAP", Value::Int(0), vec![]))
                .unwrap()
                .outcome
                .is_none()
        );
        let too_large = Value::Array(vec![entry("1-0", &["k", "g", "v", "3"])]);
        let got = watch_read(&reply("OK", Value::Int(0), vec![too_large]))
            .unwrap()
            .outcome
            .unwrap();
        assert_eq!(got[0].logged, Logged::Gap { version: 3 });
        for bad in [
            reply("OK", Value::Int(0), vec![]),
            reply(
                "OK",
                Value::Int(0),
                vec![Value::Array(vec![entry("x", &["k", "c"])])],
            ),
            reply(
                "OK",
                Value::Int(0),
                vec![Value::Array(vec![entry("1-0", &["k", "?"])])],
            ),
            reply(
                "OK",
                Value::Int(0),
                vec![Value::Array(vec![entry("1-0", &["k"])])],
            ),
            reply("NOPE", Value::Int(0), vec![]),
            Value::Nil,
        ] {
            assert!(watch_read(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_begin_answers_the_session_its_lock_and_its_log() {
        let log = Value::Array(vec![
            entry("1-0", &["k", "a", "f", "5", "e", "9"]),
            entry("2-0", &["k", "g", "v", "3"]),
            entry("3-0", &["k", "r", "f", "5"]),
        ]);
        let got = watch_begin(&reply(
            "OK",
            bulk("3-5"),
            vec![bulk("6"), Value::Nil, log, bulk("v"), bulk("4")],
        ))
        .unwrap()
        .outcome;
        assert_eq!(got.last, (3, 5));
        assert_eq!(got.lock, Some((6, 0)));
        assert_eq!(got.session.map(|s| s.version), Some(4));
        assert_eq!(got.log.len(), 3);
        assert_eq!(got.log[1].logged, Logged::Gap { version: 3 });
    }
}
