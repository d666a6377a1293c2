"""The retry policy, written once for the blocking and the asyncio client.

The policy itself is the table in the header of proto/sessiond/v1/session.proto
("Retrying"); clients/retry-policy.json holds it row by row and the tests check
`should_retry`, `outcome_unknown`, `restarts_conflict` and both backoffs
against every row, so that this client and the Node one cannot drift apart.
Nothing here does I/O.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

import grpc

# UNAVAILABLE reasons that say the call was not carried out at all: the
# instance refused it before starting, or a queued LockSession left the queue
# (releasing a grant made meanwhile). Any call may be retried on them.
NOTHING_DONE = frozenset({"SHUTTING_DOWN"})

# Calls whose replay after an applied attempt changes nothing, or is refused:
# reads, a refresh (extends the lease from now again) and an unlock (the token
# names one grant; a replay gets LOCK_LOST, never frees another holder's lock).
REPLAY_SAFE = frozenset({"GetSession", "GetStats", "RefreshLock", "UnlockSession"})

# Writes that are replay-safe only when guarded by `expected_version` (a replay
# gets VERSION_MISMATCH) or `lock_token` (a replay gets LOCK_LOST, or lands on
# the state it made itself, as nobody else can write meanwhile).
GUARDABLE_WRITES = frozenset({"UpdateSession", "DeleteSession"})

# Calls that an idempotency key makes replay-safe: a replay within the
# server's window gets the first answer (a write's, or a lock's grant) and is
# not applied again.
KEYED = frozenset({"UpdateSession", "DeleteSession", "LockSession"})

# What update_with_retry starts over on: nothing was written.
CONFLICTS = frozenset({"VERSION_MISMATCH", "LOCK_HELD"})

CONFLICT_BASE_BACKOFF = 0.005
CONFLICT_MAX_BACKOFF = 0.2


def outcome_unknown(code: grpc.StatusCode, reason: Optional[str]) -> bool:
    """True when an UNAVAILABLE attempt may have been applied before it failed
    (STORE_UNAVAILABLE after a store timeout, a transport failure, a reason this
    client does not know); False for SHUTTING_DOWN and for other codes."""
    return code == grpc.StatusCode.UNAVAILABLE and reason not in NOTHING_DONE


def should_retry(
    method: str,
    code: grpc.StatusCode,
    reason: Optional[str],
    *,
    lock_token: bool = False,
    expected_version: bool = False,
    idempotency_key: bool = False,
) -> bool:
    """Whether an attempt of `method` (the RPC's name) that failed with
    `code`/`reason` may be sent again. `lock_token` / `expected_version` /
    `idempotency_key` say which guards the request carried; `release_lock`
    does not matter (alone it is no guard, with a token the replay is refused
    with LOCK_LOST)."""
    if code != grpc.StatusCode.UNAVAILABLE:
        return False
    if reason in NOTHING_DONE:
        return True
    if method in REPLAY_SAFE:
        return True
    if method in KEYED and idempotency_key:
        return True
    if method in GUARDABLE_WRITES:
        return lock_token or expected_version
    return False  # LockSession without a key: a lost grant would be a lock nobody knows of


def restarts_conflict(reason: Optional[str], maybe_applied: bool) -> bool:
    """Whether update_with_retry reads again and reruns the handler after its
    write failed with `reason`. Never after an attempt of unknown outcome: the
    handler's write may already be in, and a rerun could apply it twice."""
    return reason in CONFLICTS and not maybe_applied


def equal_jitter(n: int, base: float, cap: float) -> float:
    """c/2 + uniform(0, c/2), c = min(cap, base * 2**n): the random half keeps
    clients apart, the fixed half makes the retries span a short outage."""
    ceiling = min(cap, base * (2**n))
    return ceiling / 2 + random.uniform(0.0, ceiling / 2)


def conflict_backoff(n: int) -> float:
    """The sleep before the (n+1)-th rerun of update_with_retry's handler."""
    return equal_jitter(n, CONFLICT_BASE_BACKOFF, CONFLICT_MAX_BACKOFF)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently UNAVAILABLE is retried (which calls: see
    `should_retry`).

    Retry n (0-based) of a call is preceded by a sleep drawn uniformly from
    [c/2, c], c = min(max_backoff, base_backoff * 2**n).
    """

    retries: int = 3
    base_backoff: float = 0.05
    max_backoff: float = 2.0

    def backoff(self, attempt: int) -> float:
        return equal_jitter(attempt, self.base_backoff, self.max_backoff)
