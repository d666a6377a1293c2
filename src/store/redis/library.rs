//! sessiond's Lua as one Redis Functions library (Redis 7.0 or later).
//!
//! The library is loaded once per server (`FUNCTION LOAD REPLACE`) and every
//! call is an `FCALL`. A script sent with `EVALSHA` ran the prelude's
//! definitions again on every call, about 4 µs of Redis CPU each time
//! (BENCHMARKS.md); a library runs them once, when it is loaded.
//!
//! Its text: the line naming the publish command (see `channels`), the
//! declarations of `KEYS` and `ARGV`, then watch.lua, prelude.lua,
//! idempotency.lua and ops.lua, then one function per script, which starts
//! with the prelude's `begin` (the call's keys and arguments, and the
//! modules' per-call state) and runs the script's body as it stands.
//!
//! The library's name, and its functions', carry a digest of its text: an
//! instance calls exactly the code it was built with, and two versions of
//! sessiond on one Redis (a rolling upgrade) each load and call their own.
//! A server that lacks the library (restarted without persistence, its
//! functions flushed, a new cluster master) answers "Function not found"
//! without running anything: [`call`] loads it there and sends the call
//! again.

use redis::{Cmd, RedisResult, ToRedisArgs, Value, aio::ConnectionLike};

use super::durability::{info_field, refused};
use super::fault::Fault;
use super::{IDEMPOTENCY, Inner, OPS, PRELUDE, WATCH};

/// The library's functions, one per script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Function {
    Update,
    Delete,
    Lock,
    Abandon,
    Unlock,
    Refresh,
    Inspect,
    ForceUnlock,
    Rate,
    WatchBegin,
    WatchRead,
}

impl Function {
    const ALL: [Function; 11] = [
        Function::Update,
        Function::Delete,
        Function::Lock,
        Function::Abandon,
        Function::Unlock,
        Function::Refresh,
        Function::Inspect,
        Function::ForceUnlock,
        Function::Rate,
        Function::WatchBegin,
        Function::WatchRead,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::Update => "update",
            Function::Delete => "delete",
            Function::Lock => "lock",
            Function::Abandon => "abandon",
            Function::Unlock => "unlock",
            Function::Refresh => "refresh",
            Function::Inspect => "inspect",
            Function::ForceUnlock => "force_unlock",
            Function::Rate => "rate",
            Function::WatchBegin => "watch_begin",
            Function::WatchRead => "watch_read",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Function::Update => include_str!("update.lua"),
            Function::Delete => include_str!("delete.lua"),
            Function::Lock => include_str!("lock.lua"),
            Function::Abandon => include_str!("abandon.lua"),
            Function::Unlock => include_str!("unlock.lua"),
            Function::Refresh => include_str!("refresh.lua"),
            Function::Inspect => include_str!("inspect.lua"),
            Function::ForceUnlock => include_str!("force_unlock.lua"),
            Function::Rate => include_str!("rate.lua"),
            Function::WatchBegin => include_str!("watch_begin.lua"),
            Function::WatchRead => include_str!("watch_read.lua"),
        }
    }

    /// Its flags. Redis refuses a function without `allow-oom` while it is
    /// over `maxmemory` (a script sent with EVALSHA was refused at its first
    /// write instead): the calls that free memory or end a lock still run.
    fn flags(self) -> &'static str {
        match self {
            Function::Delete | Function::Abandon | Function::Unlock | Function::ForceUnlock => {
                "'allow-oom'"
            }
            _ => "",
        }
    }
}

pub(super) struct Library {
    /// `FUNCTION LOAD REPLACE <text>`.
    load: Cmd,
    /// Each function's name in Redis, in `Function::ALL`'s order.
    names: Vec<String>,
}

impl Library {
    /// The library whose functions publish with `publish` (see `channels`).
    pub(super) fn new(publish: &str) -> Library {
        let mut code = format!(
            "#!lua name={LIBRARY}\nlocal PUBLISH = '{publish}'\nlocal KEYS, ARGV\n\
             {WATCH}\n{PRELUDE}\n{IDEMPOTENCY}\n{OPS}\n"
        );
        for f in Function::ALL {
            code.push_str(&format!(
                "redis.register_function{{function_name = '{LIBRARY}_{}', flags = {{{}}}, \
                 callback = function(keys, args)\nbegin(keys, args)\n{}\nend}}\n",
                f.name(),
                f.flags(),
                f.body()
            ));
        }
        // SHA-1, as redis-rs computes a script's.
        let digest = redis::Script::new(&code).get_hash().to_owned();
        let library = format!("sessiond_{}", &digest[..16]);
        let names = Function::ALL
            .iter()
            .map(|f| format!("{library}_{}", f.name()))
            .collect();
        let mut load = redis::cmd("FUNCTION");
        load.arg("LOAD")
            .arg("REPLACE")
            .arg(code.replace(LIBRARY, &library));
        Library { load, names }
    }

    /// A call of `f`, to be given its keys, then its arguments.
    pub(super) fn call(&self, f: Function) -> Call<'_> {
        let i = Function::ALL.iter().position(|g| *g == f).unwrap_or(0);
        Call {
            name: self.names.get(i).map_or("", String::as_str),
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

impl Inner {
    /// Loads the library (on a cluster, on every master). `Ok(Err(why))`:
    /// the server refused it, in words for the operator; only a fault of
    /// the connection is an error.
    pub(super) async fn load_library(&self) -> Result<Result<(), String>, Fault> {
        let why = match self.ask::<Value>(&self.library.load).await {
            Ok(_) => return Ok(Ok(())),
            Err(f) => match refused(&f) {
                // Not Redis's echo of the arguments: the library's text.
                Some(why) => match why.split_once(", with args beginning with") {
                    Some((why, _)) => why.to_owned(),
                    None => why,
                },
                None => return Err(f),
            },
        };
        let version = match self.ask::<String>(redis::cmd("INFO").arg("server")).await {
            Ok(info) => info_field(&info, "redis_version"),
            Err(_) => None,
        };
        Ok(Err(match version {
            Some(v) if !has_functions(&v) => format!(
                "sessiond needs Redis 7.0 or later: it runs its scripts as a Redis Functions \
                 library, and this server is Redis {v}"
            ),
            _ => format!(
                "Redis refused sessiond's Functions library (sessiond's user needs FUNCTION \
                 LOAD and FCALL): {why}"
            ),
        }))
    }
}

/// Stands for the library's name in its text until the text's digest,
/// which the name carries, is known.
const LIBRARY: &str = "@library@";

/// One call of a function: its keys and arguments, as `FCALL` takes them.
pub(super) struct Call<'l> {
    name: &'l str,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call<'_> {
    pub(super) fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub(super) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// `FCALL <name> <number of keys> <keys...> <args...>`.
    pub(super) fn cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(self.name).arg(self.keys.len());
        for k in &self.keys {
            cmd.arg(k.as_slice());
        }
        for a in &self.args {
            cmd.arg(a.as_slice());
        }
        cmd
    }
}

/// Sends `call` on `conn`; where the server lacks the library (it answered
/// without running anything), loads it and sends the call once more.
pub(super) async fn call<C: ConnectionLike + Send>(
    library: &Library,
    conn: &mut C,
    call: &Cmd,
) -> RedisResult<Value> {
    match call.query_async::<Value>(conn).await {
        Err(e) if missing(&e) => {
            library.load.query_async::<Value>(conn).await?;
            call.query_async::<Value>(conn).await
        }
        answer => answer,
    }
}

/// Whether Redis answered that it has no such function.
fn missing(e: &redis::RedisError) -> bool {
    e.code() == Some("ERR")
        && e.detail()
            .is_some_and(|d| d.starts_with("Function not found"))
}

/// Whether a server of this `redis_version` has Functions (7.0 or later).
pub(super) fn has_functions(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_with_functions() {
        for v in ["7.0.15", "7.2.4", "8.0.0", "10.1"] {
            assert!(has_functions(v), "{v}");
        }
        for v in ["6.2.14", "5.0.7", "", "x.y"] {
            assert!(!has_functions(v), "{v}");
        }
    }

    #[test]
    fn names_carry_the_digest_of_the_code() {
        let plain = Library::new("PUBLISH");
        let sharded = Library::new("SPUBLISH");
        let name = |l: &Library| l.call(Function::Update).name.to_owned();
        assert!(name(&plain).starts_with("sessiond_") && name(&plain).ends_with("_update"));
        assert_eq!(name(&plain).len(), "sessiond_".len() + 16 + "_update".len());
        assert_ne!(name(&plain), name(&sharded));
        assert_eq!(name(&plain), name(&Library::new("PUBLISH")));
    }

    #[test]
    fn a_call_is_an_fcall_with_its_keys_counted() {
        let library = Library::new("PUBLISH");
        let mut call = library.call(Function::Rate);
        call.key("k1").key("k2").arg(5).arg("x");
        let args: Vec<Vec<u8>> = call
            .cmd()
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        let name = library.call(Function::Rate).name.as_bytes().to_vec();
        let want: Vec<Vec<u8>> = vec![
            b"FCALL".to_vec(),
            name,
            b"2".to_vec(),
            b"k1".to_vec(),
            b"k2".to_vec(),
            b"5".to_vec(),
            b"x".to_vec(),
        ];
        assert_eq!(args, want);
    }
}
