'use strict';
// Client: one gRPC channel to sessiond, promise methods for every RPC, and the
// two read-modify-write helpers (withLock, updateWithRetry).

const grpc = require('@grpc/grpc-js');
const { sessionService, adminService } = require('./proto');
const { SessionDraft, toBuffer } = require('./draft');
const { addTraceContext } = require('./trace');
const {
  fromGrpcError,
  SessiondError,
  SessionNotFound,
  VersionMismatch,
  LockHeld,
  LockLost,
} = require('./errors');
const {
  DEFAULT_RETRIES,
  DEFAULT_ATTEMPTS,
  shouldRetry,
  outcomeUnknown,
  restartsConflict,
  backoffMs,
  conflictBackoffMs,
} = require('./retry-policy');

const SessionServiceClient = grpc.makeClientConstructor(sessionService, 'SessionService');
const AdminServiceClient = grpc.makeClientConstructor(adminService, 'AdminService');

const DEFAULT_TIMEOUT_MS = 5000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const UINT64_MAX = 2n ** 64n - 1n;

// A rate limit's fields as CheckRateRequest and RateLimit have them.
function rateLimitOf({ name = '', perSecond, burst, cost = 1, namespaceScope = false }) {
  const r = {
    name,
    cost: toUint64String(cost, 'cost'),
    scope: namespaceScope ? 'RATE_SCOPE_NAMESPACE' : 'RATE_SCOPE_SESSION',
  };
  if (perSecond !== undefined && perSecond !== null) r.perSecond = perSecond;
  if (burst !== undefined && burst !== null) r.burst = toUint64String(burst, 'burst');
  return r;
}

function toUint64String(value, what) {
  const ok = typeof value === 'bigint'
    || (typeof value === 'number' && Number.isSafeInteger(value))
    || (typeof value === 'string' && /^\d+$/.test(value));
  if (!ok) throw new TypeError(`${what} must be a bigint, a safe integer or a decimal string`);
  const n = BigInt(value);
  if (n < 0n || n > UINT64_MAX) throw new RangeError(`${what} must be within 0..2^64-1`);
  return n.toString();
}

function toDate(ts) {
  if (!ts) return null;
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6));
}

function toSession(s) {
  if (!s) return null;
  return {
    sessionId: s.sessionId,
    fields: { ...s.fields },
    version: BigInt(s.version),
    createdAt: toDate(s.createdAt),
    updatedAt: toDate(s.updatedAt),
    expiresAt: toDate(s.expiresAt),
  };
}

// A WatchSessionResponse as an event: `kind` names it (the oneof's case,
// snake_case as in the proto: 'snapshot', 'resumed', 'changed',
// 'lock_acquired', 'lock_released', 'lock_expired', 'lock_forced',
// 'deleted', 'idle_expired'), `version` is the session's version once it
// happened (a bigint: pass the last one read as afterVersion to resume).
const WATCH_KINDS = {
  snapshot: 'snapshot',
  resumed: 'resumed',
  changed: 'changed',
  lockAcquired: 'lock_acquired',
  lockReleased: 'lock_released',
  lockExpired: 'lock_expired',
  lockForced: 'lock_forced',
  deleted: 'deleted',
  idleExpired: 'idle_expired',
};

function toWatchEvent(res) {
  const kind = WATCH_KINDS[res.event] ?? res.event;
  const e = { kind, version: BigInt(res.version) };
  const body = res[res.event] ?? {};
  if (res.event === 'snapshot') {
    e.session = toSession(body.session);
    e.resync = body.resync;
    e.fencingToken = body.lock ? BigInt(body.lock.fencingToken) : null;
    e.leaseExpiresAt = body.lock ? toDate(body.lock.leaseExpiresAt) : null;
  } else if (res.event === 'changed') {
    e.setFields = body.setFields;
    e.removedFields = body.removedFields;
    e.values = { ...body.values };
    e.replaced = body.replaced;
    e.created = body.created;
    e.expiresAt = toDate(body.expiresAt);
  } else if (res.event === 'lockAcquired') {
    e.fencingToken = BigInt(body.fencingToken);
    e.leaseExpiresAt = toDate(body.leaseExpiresAt);
  } else if (body.fencingToken !== undefined) {
    e.fencingToken = BigInt(body.fencingToken);
  }
  return e;
}

const TURN_POLICY = {
  FIFO: 'TURN_POLICY_FIFO',
  LATEST_WINS: 'TURN_POLICY_LATEST_WINS',
  DEBOUNCE: 'TURN_POLICY_DEBOUNCE',
};

const CONSISTENCY = {
  cached: 'CONSISTENCY_CACHED',
  strong: 'CONSISTENCY_STRONG',
};

class Client {
  /**
   * @param {string} target host:port of sessiond, e.g. "127.0.0.1:50051"
   * @param {object} [options]
   * @param {number} [options.timeoutMs=5000] deadline of each call (LockSession: plus its waitMs)
   * @param {number} [options.retries=3] extra attempts after UNAVAILABLE, for calls safe to retry
   * @param {grpc.ChannelCredentials} [options.credentials] default: insecure (plaintext)
   * @param {Record<string,string>} [options.metadata] sent with every call (e.g. authorization)
   * @param {object} [options.channelOptions] grpc-js channel options
   * @param {grpc.Interceptor[]} [options.interceptors] grpc-js client interceptors, run on every call
   *
   * With @opentelemetry/api installed, every call also carries the caller's
   * active span as `traceparent` / `tracestate`.
   */
  constructor(target, options = {}) {
    const {
      timeoutMs = DEFAULT_TIMEOUT_MS,
      retries = DEFAULT_RETRIES,
      credentials = grpc.credentials.createInsecure(),
      metadata = {},
      channelOptions = {},
      interceptors = [],
    } = options;
    if (!(timeoutMs > 0)) throw new RangeError('timeoutMs must be > 0');
    if (!(Number.isInteger(retries) && retries >= 0)) throw new RangeError('retries must be an integer >= 0');
    this.target = target;
    this.timeoutMs = timeoutMs;
    this.retries = retries;
    this._metadata = metadata;
    this._channel = new grpc.Channel(target, credentials, channelOptions);
    const stubOptions = { channelOverride: this._channel, interceptors };
    this._session = new SessionServiceClient(target, credentials, stubOptions);
    this._admin = new AdminServiceClient(target, credentials, stubOptions);
  }

  /** Waits until the channel is connected (or rejects after timeoutMs). */
  ready(timeoutMs = this.timeoutMs) {
    return new Promise((resolve, reject) => {
      this._session.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Closes the channel; calls in flight fail. */
  close() {
    this._session.close();
    this._admin.close();
    this._channel.close();
  }

  // One unary call with a deadline, typed errors and the retry policy of
  // ./retry-policy (the table in session.proto). `guards` says which of
  // lockToken / expectedVersion a write carries. An error that follows a
  // retried attempt of unknown outcome has maybeApplied set.
  // opts.signal (an AbortSignal) cancels the call: it then rejects with the
  // signal's reason, and a caller queued for a lock leaves the queue.
  async _call(stub, method, request, opts = {}, { extraMs = 0, guards = {} } = {}) {
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const retries = opts.retries ?? this.retries;
    const { signal } = opts;
    let unknown = false;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      try {
        return await new Promise((resolve, reject) => {
          const md = new grpc.Metadata();
          for (const [k, v] of Object.entries(this._metadata)) md.set(k, v);
          addTraceContext(md);
          const onAbort = () => call.cancel();
          const call = stub[method](request, md, { deadline: Date.now() + timeoutMs + extraMs }, (err, res) => {
            signal?.removeEventListener('abort', onAbort);
            if (!err) resolve(res);
            else if (signal?.aborted) reject(signal.reason);
            else reject(fromGrpcError(err, method));
          });
          signal?.addEventListener('abort', onAbort, { once: true });
        });
      } catch (err) {
        if (!(err instanceof SessiondError)) throw err;
        if (attempt < retries && shouldRetry(method, err.code, err.reason, guards)) {
          unknown = unknown || outcomeUnknown(err.code, err.reason);
          await sleep(backoffMs(attempt));
          continue;
        }
        err.maybeApplied = unknown;
        throw err;
      }
    }
  }

  /**
   * GetSession. Rejects with SessionNotFound when the session does not exist.
   * @param {{consistency?: 'cached'|'strong', minVersion?: bigint|number}} [opts]
   */
  async get(sessionId, opts = {}) {
    const { consistency = 'cached', minVersion = 0n } = opts;
    if (!(consistency in CONSISTENCY)) throw new TypeError('consistency must be "cached" or "strong"');
    const res = await this._call(this._session, 'GetSession', {
      sessionId,
      consistency: CONSISTENCY[consistency],
      minVersion: toUint64String(minVersion, 'minVersion'),
    }, opts);
    return { ...toSession(res.session), fromCache: res.fromCache };
  }

  /**
   * LockSession. waitMs 0 = try once (LockHeld when held); > 0 = wait
   * (LockWaitTimeout when it runs out). The call's deadline is timeoutMs + waitMs.
   * rateLimit ({ name, perSecond, burst, cost, namespaceScope }, as checkRate
   * takes) is checked first: RateLimited when it refuses, nothing queued for.
   * policy 'LATEST_WINS' or 'DEBOUNCE' (with debounceMs of quiet) makes this
   * waiter the newest of the session's burst, with payload attached: a newer
   * one supersedes it (Superseded), and the one granted gets the others'
   * payloads in supersededPayloads, oldest first. idempotencyKey: a repeat
   * within the server's window gets the first grant's answer (replayed: true),
   * and the call is then retried on any UNAVAILABLE.
   */
  async lock(sessionId, opts = {}) {
    const {
      leaseMs = 0, waitMs = 0, rateLimit, policy = 'FIFO', debounceMs = 0, payload, idempotencyKey = '',
    } = opts;
    if (!(policy in TURN_POLICY)) throw new TypeError('policy must be "FIFO", "LATEST_WINS" or "DEBOUNCE"');
    const req = {
      sessionId, leaseMs, waitMs, policy: TURN_POLICY[policy], debounceMs, idempotencyKey,
    };
    if (payload !== undefined) req.payload = Buffer.from(payload);
    if (rateLimit) req.rateLimit = rateLimitOf(rateLimit);
    const res = await this._call(this._session, 'LockSession', req, opts, {
      extraMs: waitMs,
      guards: { idempotencyKey: idempotencyKey !== '' },
    });
    return {
      lockToken: res.lockToken,
      fencingToken: BigInt(res.fencingToken),
      leaseExpiresAt: toDate(res.leaseExpiresAt),
      session: toSession(res.session),
      supersededPayloads: (res.supersededPayloads || []).map((p) => Buffer.from(p)),
      supersededDropped: res.supersededDropped || 0,
      replayed: Boolean(res.replayed),
    };
  }

  /**
   * UpdateSession. `set` values are Buffers, Uint8Arrays or UTF-8 strings.
   * expectedVersion: compare-and-set (0 = create only); omit for no check.
   * ops: field operations (increment, append, setIfAbsent), applied in the
   * same step; the result's opValues has their new values. idempotencyKey:
   * a repeat within the server's window gets the first call's answer.
   */
  async update(sessionId, opts = {}) {
    const {
      set = {}, replace = false, lockToken = '', expectedVersion, releaseLock = false,
      ops = [], idempotencyKey = '',
    } = opts;
    const del = opts.delete ?? [];
    const setFields = {};
    for (const [name, value] of Object.entries(set)) setFields[name] = toBuffer(value, name);
    const req = {
      sessionId, setFields, deleteFields: [...del], replace, lockToken, releaseLock,
      ops: [...ops], idempotencyKey,
    };
    if (expectedVersion !== undefined && expectedVersion !== null) {
      req.expectedVersion = toUint64String(expectedVersion, 'expectedVersion');
    }
    const res = await this._call(this._session, 'UpdateSession', req, opts, {
      guards: {
        lockToken: lockToken !== '',
        expectedVersion: req.expectedVersion !== undefined,
        idempotencyKey: idempotencyKey !== '',
      },
    });
    return { version: BigInt(res.version), expiresAt: toDate(res.expiresAt), opValues: res.opValues ?? [] };
  }

  /**
   * DeleteSession; resolves { deleted: false } when there was nothing to delete.
   * Retried as update: unguarded, a replay could delete a session someone
   * created in between, so it is retried on SHUTTING_DOWN only.
   */
  async delete(sessionId, opts = {}) {
    const { lockToken = '', expectedVersion, releaseLock = false, idempotencyKey = '' } = opts;
    const req = { sessionId, lockToken, releaseLock, idempotencyKey };
    if (expectedVersion !== undefined && expectedVersion !== null) {
      req.expectedVersion = toUint64String(expectedVersion, 'expectedVersion');
    }
    const res = await this._call(this._session, 'DeleteSession', req, opts, {
      guards: {
        lockToken: lockToken !== '',
        expectedVersion: req.expectedVersion !== undefined,
        idempotencyKey: idempotencyKey !== '',
      },
    });
    return { deleted: res.deleted };
  }

  /** UnlockSession. Rejects with LockLost when the token no longer holds the lock. */
  async unlock(sessionId, lockToken, opts = {}) {
    await this._call(this._session, 'UnlockSession', { sessionId, lockToken }, opts);
  }

  /** RefreshLock: extends the lease by leaseMs from now (0 = server default). */
  async refresh(sessionId, lockToken, opts = {}) {
    const { leaseMs = 0 } = opts;
    const res = await this._call(this._session, 'RefreshLock', { sessionId, lockToken, leaseMs }, opts);
    return { leaseExpiresAt: toDate(res.leaseExpiresAt) };
  }

  /**
   * CheckRate: takes `cost` units (default 1) from the rate limit `name`
   * ('default' when empty) of the session, or of the whole namespace with
   * { namespaceScope: true } (then sessionId is not read). GCRA: perSecond
   * units a second on average, at most burst at once; left out, the server's
   * defaults. Resolves { remaining, resetAfterMs }; rejects with RateLimited
   * (retryAfterMs) when the limit is used up: nothing was taken. Retried on
   * SHUTTING_DOWN only: a replay after an applied check takes its units twice.
   */
  async checkRate(sessionId, opts = {}) {
    const req = { sessionId: sessionId ?? '', ...rateLimitOf(opts) };
    const res = await this._call(this._session, 'CheckRate', req, opts);
    return { remaining: Number(res.remaining), resetAfterMs: Number(res.resetAfterMs) };
  }

  /**
   * WatchSession: an async iterator of the session's events, from a snapshot
   * (or, with afterVersion, a 'resumed' and the events since, or a snapshot
   * with resync set when they are no longer kept) until the caller stops
   * iterating (the stream is then cancelled), opts.signal aborts, or the
   * watch ends with an error: WatchLagged (read too slowly), ShuttingDown
   * (the instance drains), StoreUnavailable. Never retried by itself: watch
   * again with afterVersion = the last version read. No deadline.
   * @param {{afterVersion?: bigint|number, includeValues?: boolean, signal?: AbortSignal}} [opts]
   */
  async *watch(sessionId, opts = {}) {
    const { afterVersion = 0, includeValues = false, signal } = opts;
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(this._metadata)) md.set(k, v);
    addTraceContext(md);
    const request = {
      sessionId,
      afterVersion: toUint64String(afterVersion, 'afterVersion'),
      includeValues,
    };
    const call = this._session.WatchSession(request, md);
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const res of call) yield toWatchEvent(res);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      throw fromGrpcError(err, 'WatchSession');
    } finally {
      signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  /** AdminService.GetStats, with uptime as uptimeMs and counters as numbers. */
  async stats(opts = {}) {
    const res = await this._call(this._admin, 'GetStats', {}, opts);
    const { uptime, ...rest } = res;
    const uptimeMs = uptime ? Number(uptime.seconds) * 1000 + Math.floor(uptime.nanos / 1e6) : 0;
    return { ...rest, uptimeMs };
  }

  /**
   * Locks the session, runs `fn(session)` and writes what it set/deleted with
   * the lock token, releasing the lock in the same step (only unlocks when
   * nothing changed, unlocks and rethrows when fn throws). The lease is
   * refreshed every lease/3 while fn runs; once a refresh reports the lock
   * lost, `session.signal` aborts and withLock rejects with LockLost without
   * writing. Resolves with fn's return value. `rateLimit`, `policy`,
   * `debounceMs`, `payload` and `idempotencyKey` are lock()'s (Superseded
   * when a newer waiter of the burst takes this one's place); `session.lock`
   * is the grant, with its supersededPayloads, and `replayed` when the key's
   * lock was granted before (the event was handled already).
   */
  async withLock(sessionId, fn, opts = {}) {
    const { leaseMs = 0, waitMs = 0, timeoutMs, signal } = opts;
    const { rateLimit, policy, debounceMs, payload, idempotencyKey } = opts;
    const held = await this.lock(sessionId, {
      leaseMs, waitMs, timeoutMs, signal, rateLimit, policy, debounceMs, payload, idempotencyKey,
    });
    const { lockToken } = held;
    // The lease actually granted: what we asked for, or the server's default
    // as its expiry tells (clamped, in case the clocks disagree).
    const lease = leaseMs > 0
      ? leaseMs
      : Math.min(300_000, Math.max(100, held.leaseExpiresAt - Date.now()));
    const period = Math.max(10, Math.floor(lease / 3));

    const controller = new AbortController();
    let lost = null;
    let inflight = null;
    // When the lease surely runs out unless a refresh lands: counted from the
    // moment the last successful refresh (or the lock) was sent.
    let leaseEnd = Date.now() + lease;
    const timer = setInterval(() => {
      if (inflight || lost) return;
      const sentAt = Date.now();
      // A slow refresh still counts if it lands before the lease ends, so its
      // deadline is what is left of the lease, not the tick.
      const timeoutMs = Math.max(50, leaseEnd - sentAt);
      inflight = this.refresh(sessionId, lockToken, { leaseMs, timeoutMs, retries: 0 })
        .then(() => {
          leaseEnd = sentAt + lease;
        })
        .catch((err) => {
          // Anything but LockLost (a blip of the network, an overloaded
          // server) is retried at the next tick; the final write is guarded by
          // the token anyway.
          if (err instanceof LockLost && !lost) {
            lost = err;
            clearInterval(timer);
            controller.abort(err);
          }
        })
        .finally(() => {
          inflight = null;
        });
    }, period);

    const session = new SessionDraft(sessionId, held.session, { ...held, signal: controller.signal, grant: held });
    let result;
    try {
      result = await fn(session);
    } catch (err) {
      clearInterval(timer);
      await inflight;
      if (!lost) await this.unlock(sessionId, lockToken).catch(() => {});
      throw err;
    }
    clearInterval(timer);
    await inflight;
    if (lost) {
      throw new LockLost(`withLock(${JSON.stringify(sessionId)}): the lock was lost while the handler ran; nothing was written`, {
        code: lost.code,
        reason: lost.reason,
        metadata: lost.metadata,
        details: lost.details,
        cause: lost,
      });
    }
    if (!session.changed) {
      await this.unlock(sessionId, lockToken, { timeoutMs });
      return result;
    }
    try {
      await this.update(sessionId, { ...session.changes(), lockToken, releaseLock: true, timeoutMs });
    } catch (err) {
      // Refused (a limit, a bad field name) or unknown (transport): the lock
      // may still be ours, so release it rather than leave it to the lease.
      if (!(err instanceof LockLost)) await this.unlock(sessionId, lockToken).catch(() => {});
      throw err;
    }
    return result;
  }

  /**
   * Optimistic read-modify-write: reads the session (STRONG), runs
   * `fn(session)`, writes its changes with expectedVersion = the version read
   * (0 = create only when it did not exist) and starts over on
   * VersionMismatch, or LockHeld while someone holds the lock (nothing was
   * written either way), up to `attempts` times, sleeping a few jittered
   * milliseconds in between. Resolves with fn's return value of the attempt
   * that won. An error flagged maybeApplied (an earlier attempt of the write
   * may have landed) is thrown at once: running fn again could apply it twice.
   */
  async updateWithRetry(sessionId, fn, opts = {}) {
    const { attempts = DEFAULT_ATTEMPTS, timeoutMs } = opts;
    if (!(Number.isInteger(attempts) && attempts >= 1)) throw new RangeError('attempts must be an integer >= 1');
    for (let attempt = 1; ; attempt++) {
      let snapshot = null;
      try {
        snapshot = await this.get(sessionId, { consistency: 'strong', timeoutMs });
      } catch (err) {
        if (!(err instanceof SessionNotFound)) throw err;
      }
      const session = new SessionDraft(sessionId, snapshot, null);
      const result = await fn(session);
      if (!session.changed) return result;
      try {
        await this.update(sessionId, { ...session.changes(), expectedVersion: session.version, timeoutMs });
        return result;
      } catch (err) {
        // By class: an ABORTED without ErrorInfo is a VersionMismatch too.
        const reason = err instanceof LockHeld ? 'LOCK_HELD' : err instanceof VersionMismatch ? 'VERSION_MISMATCH' : null;
        if (!restartsConflict(reason, err.maybeApplied) || attempt >= attempts) throw err;
      }
      await sleep(conflictBackoffMs(attempt - 1));
    }
  }
}

// The operator calls (lib/admin.js) are methods of Client too.
Object.assign(Client.prototype, require('./admin').adminCalls);

module.exports = { Client, backoffMs };
