//! Durability made explicit: what Redis's own settings make of an
//! acknowledged write, and the `--redis-durability` wait that makes a write
//! or a grant durable before it is acknowledged.
//!
//! The wait (`WAIT N t` or `WAITAOF 1 0 t`) goes out on the script's
//! connection in the same write as the script (see [`Durable`]): both count
//! the replication offset of *their connection's* last write, so the wait
//! must follow the script on that connection, and pipelined it costs no
//! round trip beyond the wait itself. A script that wrote nothing leaves that
//! offset where the connection's earlier writes put it: its answer waits for
//! those only (a refusal, or a grant found already made by another
//! connection's handover).
//!
//! Redis blocks a connection while a wait runs, so the commands behind it on
//! the same multiplexed connection queue until it ends: with a wait on,
//! every command gets `--redis-timeout` plus the wait's timeout.
//!
//! The settings (`appendonly`, `appendfsync`, `maxmemory-policy`,
//! `maxmemory`, and for `replicas:N` the replicas connected) are read at
//! start, every `--redis-check-interval` and after a reconnect; each risk
//! found is logged once as a warning and shown in GetStats and `/metrics`.
//! A server that refuses CONFIG (renamed, or denied by ACL) is reported as
//! `unknown`, not as a fault.

use std::sync::Weak;
use std::time::Duration;

use redis::{Cmd, RedisFuture, Value};

use super::Inner;
use super::conns::Conn;
use super::fault::Fault;
use crate::config::RedisDurability;

mod settings;

use settings::assess;
pub(super) use settings::{info_field, refused};

/// After a reconnect, how long the check waits for the other connections to
/// come back too (one check, not one per connection).
const SETTLE: Duration = Duration::from_secs(1);

/// What this instance's writes wait for, built once.
pub(super) struct Policy {
    pub(super) mode: RedisDurability,
    /// `None` with `RedisDurability::None`.
    pub(super) wait: Option<Wait>,
    pub(super) check_every: Duration,
}

impl Policy {
    pub(super) fn new(mode: RedisDurability, timeout: Duration, check_every: Duration) -> Policy {
        let ms = timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let cmd = match mode {
            RedisDurability::None => None,
            RedisDurability::Aof => Some(redis::cmd("WAITAOF").arg(1).arg(0).arg(ms).clone()),
            RedisDurability::Replicas(n) => Some(redis::cmd("WAIT").arg(n).arg(ms).clone()),
        };
        Policy {
            mode,
            wait: cmd.map(|cmd| Wait { mode, timeout, cmd }),
            check_every,
        }
    }

    /// How long a command may queue behind a wait on its connection.
    pub(super) fn extra_time(&self) -> Duration {
        self.wait.as_ref().map_or(Duration::ZERO, |w| w.timeout)
    }
}

/// The wait that follows every script, and how its answer is judged.
pub(super) struct Wait {
    mode: RedisDurability,
    timeout: Duration,
    cmd: Cmd,
}

impl Wait {
    /// `Ok` when the answer says the script's effects are durable as asked;
    /// else why not, as the caller's UNAVAILABLE says it.
    pub(super) fn judge(&self, answer: Option<&Value>) -> Result<(), String> {
        let detail = match (self.mode, answer) {
            (RedisDurability::Replicas(n), Some(Value::Int(acked))) if *acked >= i64::from(n) => {
                return Ok(());
            }
            (RedisDurability::Replicas(n), Some(Value::Int(acked))) => format!(
                "only {acked} of the {n} replicas wanted acknowledged it within {:?}",
                self.timeout
            ),
            (RedisDurability::Aof, Some(Value::Array(counts))) => match counts.first() {
                Some(Value::Int(local)) if *local >= 1 => return Ok(()),
                _ => format!(
                    "the master did not fsync it to its AOF within {:?}",
                    self.timeout
                ),
            },
            (_, Some(Value::ServerError(e))) => {
                tracing::warn!(error = %e, "the durability wait failed");
                "the wait failed".to_owned()
            }
            (_, other) => {
                tracing::warn!(answer = ?other, "the durability wait answered unexpectedly");
                "the wait answered unexpectedly".to_owned()
            }
        };
        Err(format!(
            "Redis ran the call but {detail} (--redis-durability {}), so it may have been \
             applied and may yet be lost; read the session STRONG before retrying",
            self.mode
        ))
    }
}

/// A connection that sends the durability wait right behind every script,
/// in the same write, and keeps the wait's answer for [`Wait::judge`]. It
/// wraps what `library::call` talks to, so a call sent again after the
/// library was loaded is waited on too: the answer kept is that of the last
/// script sent. On a cluster the
/// pair goes to the node that owns the script's slot, and again to the node
/// a redirect names (`Conn::script_and_wait`).
pub(super) struct Durable<'w> {
    conn: Conn,
    wait: &'w Wait,
    answer: Option<Value>,
}

impl<'w> Durable<'w> {
    pub(super) fn new(conn: Conn, wait: &'w Wait) -> Self {
        Durable {
            conn,
            wait,
            answer: None,
        }
    }

    /// The wait's answer to the last script (`None` if no script went out).
    pub(super) fn answer(&self) -> Option<&Value> {
        self.answer.as_ref()
    }
}

fn is_script(cmd: &Cmd) -> bool {
    matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"FCALL"))
}

impl redis::aio::ConnectionLike for Durable<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            if !is_script(cmd) {
                return self.conn.req_packed_command(cmd).await;
            }
            let (script, wait) = self.conn.script_and_wait(cmd, &self.wait.cmd).await?;
            self.answer = wait;
            Ok(script)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.conn.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

impl Inner {
    /// Whether this server can run the wait `--redis-durability` asks for
    /// (`Err`: why not, in words for the operator). Probed with the command
    /// itself and a 1 ms timeout, so that a renamed command, an ACL, a
    /// replica or a disabled AOF answer as they would for a write.
    pub(super) async fn can_honour(&self) -> Result<Result<(), String>, Fault> {
        let (probe, name) = match self.durability.mode {
            RedisDurability::None => return Ok(Ok(())),
            RedisDurability::Aof => (
                redis::cmd("WAITAOF").arg(1).arg(0).arg(1).clone(),
                "WAITAOF",
            ),
            RedisDurability::Replicas(_) => (redis::cmd("WAIT").arg(0).arg(1).clone(), "WAIT"),
        };
        let why = match self.ask::<Value>(&probe).await {
            Ok(_) => return Ok(Ok(())),
            Err(f) => match refused(&f) {
                Some(why) => why,
                None => return Err(f),
            },
        };
        let mode = self.durability.mode;
        let version = match self.ask::<String>(redis::cmd("INFO").arg("server")).await {
            Ok(info) => info_field(&info, "redis_version").map(|v| format!("Redis {v}")),
            Err(_) => None,
        }
        .unwrap_or_else(|| "this Redis".into());
        Ok(Err(if why.contains("unknown command") {
            match mode {
                RedisDurability::Aof => format!(
                    "{version} has no WAITAOF, which --redis-durability aof needs (Redis 7.2 or \
                     later); upgrade Redis, or choose --redis-durability replicas:N or none"
                ),
                _ => format!(
                    "{version} has no {name} (renamed?), which --redis-durability {mode} needs"
                ),
            }
        } else {
            format!("{version} cannot honour --redis-durability {mode}: {name} answered {why}")
        }))
    }

    /// Reads the settings and probes the wait, then publishes what was found
    /// to GetStats and `/metrics`, logging each risk the first time it is
    /// seen. A fault of the connection leaves the last report as it was.
    pub(super) async fn check_durability(&self) -> Result<(), Fault> {
        let honour = self.can_honour().await?;
        let found = self.read_settings().await?;
        let report = assess(&found, self.durability.mode, &honour);
        let mut current = self.stats.durability.write();
        for (risk, why) in &report.risks {
            if !current.risks.iter().any(|(r, w)| r == risk && w == why) {
                tracing::warn!(risk = risk.name(), "Redis durability: {why}");
            }
        }
        if report.setting != current.setting {
            tracing::info!(
                setting = report.setting,
                wait = %self.durability.mode,
                "Redis durability settings read"
            );
        }
        if report.risks.is_empty() && !current.risks.is_empty() {
            tracing::info!("Redis durability: the earlier risks are gone");
        }
        *current = report;
        Ok(())
    }
}

/// Checks again every `--redis-check-interval`, and shortly after any
/// shared connection was (re)opened: a restarted or failed-over Redis may
/// come back with other settings. Ends with the store.
pub(super) async fn watch(inner: Weak<Inner>) {
    let Some((opened, every)) = inner
        .upgrade()
        .map(|i| (i.conns.opened.clone(), i.durability.check_every))
    else {
        return;
    };
    loop {
        let reopened = opened.notified();
        tokio::pin!(reopened);
        reopened.as_mut().enable();
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut reopened => tokio::time::sleep(SETTLE).await,
        }
        let Some(inner) = inner.upgrade() else { return };
        if let Err(fault) = inner.check_marker().await {
            tracing::debug!(error = %fault, "cannot look for the data-loss marker now");
        }
        if let Err(fault) = inner.check_durability().await {
            tracing::debug!(error = %fault, "cannot read Redis's durability settings now");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(mode: RedisDurability) -> Wait {
        Policy::new(mode, Duration::from_millis(250), Duration::from_secs(60))
            .wait
            .unwrap()
    }

    #[test]
    fn the_wait_goes_behind_scripts_only() {
        let p = Policy::new(
            RedisDurability::Replicas(2),
            Duration::from_millis(250),
            Duration::from_secs(60),
        );
        let w = p.wait.as_ref().unwrap();
        assert_eq!(
            w.cmd.get_packed_command(),
            redis::cmd("WAIT").arg(2).arg(250).get_packed_command()
        );
        assert_eq!(p.extra_time(), Duration::from_millis(250));
        let none = Policy::new(
            RedisDurability::None,
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert!(none.wait.is_none());
        assert_eq!(none.extra_time(), Duration::ZERO);
        assert!(is_script(redis::cmd("FCALL").arg("f").arg(0)));
        assert!(!is_script(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(!is_script(
            redis::cmd("FUNCTION").arg("LOAD").arg("#!lua name=x")
        ));
        assert!(!is_script(redis::cmd("HGETALL").arg("k")));
    }

    #[test]
    fn a_wait_is_judged_by_its_count() {
        let w = wait(RedisDurability::Replicas(2));
        assert_eq!(w.judge(Some(&Value::Int(2))), Ok(()));
        assert_eq!(w.judge(Some(&Value::Int(3))), Ok(()));
        let e = w.judge(Some(&Value::Int(1))).unwrap_err();
        assert!(
            e.contains("only 1 of the 2 replicas wanted acknowledged it within 250ms"),
            "{e}"
        );
        assert!(
            e.contains("may have been applied") && e.contains("replicas:2"),
            "{e}"
        );
        assert!(
            w.judge(None)
                .unwrap_err()
                .contains("the wait answered unexpectedly")
        );

        let w = wait(RedisDurability::Aof);
        assert_eq!(
            w.judge(Some(&Value::Array(vec![Value::Int(1), Value::Int(0)]))),
            Ok(())
        );
        let e = w
            .judge(Some(&Value::Array(vec![Value::Int(0), Value::Int(0)])))
            .unwrap_err();
        assert!(
            e.contains("did not fsync it to its AOF within 250ms"),
            "{e}"
        );
    }
}
