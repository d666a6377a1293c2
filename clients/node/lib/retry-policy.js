'use strict';
// The retry policy, as the table in the header of proto/sessiond/v1/session.proto
// ("Retrying") states it. clients/retry-policy.json holds it row by row, and
// test/retry-policy.test.js checks shouldRetry, outcomeUnknown,
// restartsConflict and both backoffs against every row, as the Python client's
// tests do, so that the two clients cannot drift apart.

const { status: Code } = require('@grpc/grpc-js');

// UNAVAILABLE reasons that say the call was not carried out at all: the
// instance refused it before starting, or a queued LockSession left the queue
// (releasing a grant made meanwhile). Any call may be retried on them.
const NOTHING_DONE = new Set(['SHUTTING_DOWN']);

// Calls whose replay after an applied attempt changes nothing, or is refused:
// reads, a refresh (extends the lease from now again) and an unlock (the token
// names one grant; a replay gets LOCK_LOST, never frees another holder's lock).
const REPLAY_SAFE = new Set(['GetSession', 'GetStats', 'RefreshLock', 'UnlockSession']);

// Writes that are replay-safe only when guarded by expectedVersion (a replay
// gets VERSION_MISMATCH) or lockToken (a replay gets LOCK_LOST, or lands on
// the state it made itself, as nobody else can write meanwhile).
const GUARDABLE_WRITES = new Set(['UpdateSession', 'DeleteSession']);

// Calls that an idempotency key makes replay-safe: a replay within the
// server's window gets the first answer (a write's, or a lock's grant) and is
// not applied again.
const KEYED = new Set(['UpdateSession', 'DeleteSession', 'LockSession']);

// What updateWithRetry starts over on: nothing was written.
const CONFLICTS = new Set(['VERSION_MISMATCH', 'LOCK_HELD']);

// Extra attempts of a call (Client option `retries`), and runs of an
// updateWithRetry handler (`attempts`), unless the caller says otherwise.
const DEFAULT_RETRIES = 3;
const DEFAULT_ATTEMPTS = 10;
const BACKOFF_BASE_MS = 50;
const BACKOFF_MAX_MS = 2000;
const CONFLICT_BASE_MS = 5;
const CONFLICT_MAX_MS = 200;

/**
 * True when an UNAVAILABLE attempt may have been applied before it failed
 * (STORE_UNAVAILABLE after a store timeout, a transport failure, a reason this
 * client does not know); false for SHUTTING_DOWN and for other codes.
 */
function outcomeUnknown(code, reason) {
  return code === Code.UNAVAILABLE && !NOTHING_DONE.has(reason);
}

/**
 * Whether an attempt of `method` (the RPC's name) that failed with code/reason
 * may be sent again. `guards` says which of lockToken / expectedVersion /
 * idempotencyKey the request carried (releaseLock does not matter: alone it is
 * no guard, with a token a replay is refused with LOCK_LOST).
 */
function shouldRetry(method, code, reason, { lockToken = false, expectedVersion = false, idempotencyKey = false } = {}) {
  if (code !== Code.UNAVAILABLE) return false;
  if (NOTHING_DONE.has(reason)) return true;
  if (REPLAY_SAFE.has(method)) return true;
  if (KEYED.has(method) && idempotencyKey) return true;
  if (GUARDABLE_WRITES.has(method)) return Boolean(lockToken || expectedVersion);
  return false; // LockSession without a key: a lost grant would be a lock nobody knows of
}

/**
 * Whether updateWithRetry reads again and reruns the handler after its write
 * failed with `reason`. Never after an attempt of unknown outcome: the
 * handler's write may already be in, and a rerun could apply it twice.
 */
function restartsConflict(reason, maybeApplied) {
  return CONFLICTS.has(reason) && !maybeApplied;
}

/**
 * "Equal jitter": c/2 + random(0, c/2) ms with c = min(max, base * 2^n), n = 0
 * before the first retry. The random half keeps clients apart, the fixed half
 * makes the retries span a short outage rather than spend themselves at once.
 */
function backoffMs(attempt, base = BACKOFF_BASE_MS, max = BACKOFF_MAX_MS) {
  const ceiling = Math.min(max, base * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/** The sleep before the (n+1)-th rerun of updateWithRetry's handler. */
function conflictBackoffMs(n) {
  return backoffMs(n, CONFLICT_BASE_MS, CONFLICT_MAX_MS);
}

module.exports = {
  DEFAULT_RETRIES,
  DEFAULT_ATTEMPTS,
  BACKOFF_BASE_MS,
  BACKOFF_MAX_MS,
  CONFLICT_BASE_MS,
  CONFLICT_MAX_MS,
  outcomeUnknown,
  shouldRetry,
  restartsConflict,
  backoffMs,
  conflictBackoffMs,
};
