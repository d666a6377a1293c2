'use strict';
// The client's retry policy and error decoding, against a scripted stand-in
// for sessiond (a grpc-js server on the same protos): it can answer
// STORE_UNAVAILABLE, SHUTTING_DOWN or a bare UNAVAILABLE on demand, which a
// healthy embedded sessiond never does. The policy is checked row by row
// against clients/retry-policy.json, the fixture the Python client's tests
// assert too (the table in session.proto's header). Everything else is tested
// against the real server in the other files.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
const { sessionService, adminService } = require('../lib/proto');
const policy = require('../lib/retry-policy');
const sd = require('..');

// The fixture lives beside both clients and ships in neither package.
const POLICY = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'retry-policy.json'), 'utf8'));

const rpc = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`, { keepCase: true }).root;
const StatusMsg = rpc.lookupType('google.rpc.Status');
const ErrorInfoMsg = rpc.lookupType('google.rpc.ErrorInfo');

function statusError(code, reason, message, metadata = {}) {
  const md = new grpc.Metadata();
  if (reason) {
    const info = ErrorInfoMsg.encode({ reason, domain: 'sessiond', metadata }).finish();
    const status = StatusMsg.encode({
      code,
      message,
      details: [{ type_url: 'type.googleapis.com/google.rpc.ErrorInfo', value: info }],
    }).finish();
    md.set('grpc-status-details-bin', Buffer.from(status));
  }
  return { code, details: message, metadata: md };
}

// script[method] = list of answers, consumed one per call: an error or a response.
const script = {};
const calls = {};
const requests = {};
function handler(method) {
  return (call, cb) => {
    calls[method] = (calls[method] || 0) + 1;
    requests[method] = call.request;
    const next = (script[method] || []).shift();
    if (!next) return cb(statusError(grpc.status.INTERNAL, null, 'unscripted call'));
    if (next.error) return cb(next.error);
    return cb(null, next.response);
  };
}

let server;
let client;
let noRetry;
before(async () => {
  server = new grpc.Server();
  const impl = {};
  for (const m of Object.keys(sessionService)) impl[m] = handler(m);
  server.addService(sessionService, impl);
  server.addService(adminService, { GetStats: handler('GetStats') });
  const port = await new Promise((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  client = new sd.Client(`127.0.0.1:${port}`, { timeoutMs: 2000, retries: 2 });
  noRetry = new sd.Client(`127.0.0.1:${port}`, { timeoutMs: 2000, retries: 0 });
});
after(() => {
  client.close();
  noRetry.close();
  server.forceShutdown();
});

function reset() {
  for (const k of Object.keys(script)) delete script[k];
  for (const k of Object.keys(calls)) delete calls[k];
}

const unavailable = (reason) => ({ error: statusError(grpc.status.UNAVAILABLE, reason, `test ${reason}`) });
const session = { sessionId: 'a', fields: { x: Buffer.from('1') }, version: '7' };

test('every reason maps to its class, with code, reason and metadata', async () => {
  const cases = [
    ['INVALID_SESSION_ID', grpc.status.INVALID_ARGUMENT, sd.InvalidArgument],
    ['INVALID_FIELD', grpc.status.INVALID_ARGUMENT, sd.InvalidArgument],
    ['INVALID_LEASE', grpc.status.INVALID_ARGUMENT, sd.InvalidArgument],
    ['INVALID_WAIT', grpc.status.INVALID_ARGUMENT, sd.InvalidArgument],
    ['INVALID_LOCK_TOKEN', grpc.status.INVALID_ARGUMENT, sd.InvalidArgument],
    ['LIMIT_EXCEEDED', grpc.status.INVALID_ARGUMENT, sd.InvalidArgument],
    ['SESSION_NOT_FOUND', grpc.status.NOT_FOUND, sd.SessionNotFound],
    ['VERSION_MISMATCH', grpc.status.ABORTED, sd.VersionMismatch],
    ['LOCK_HELD', grpc.status.FAILED_PRECONDITION, sd.LockHeld],
    ['LOCK_LOST', grpc.status.FAILED_PRECONDITION, sd.LockLost],
    ['LOCK_WAIT_TIMEOUT', grpc.status.DEADLINE_EXCEEDED, sd.LockWaitTimeout],
    ['OVERLOADED', grpc.status.RESOURCE_EXHAUSTED, sd.Overloaded],
    ['STORE_UNAVAILABLE', grpc.status.UNAVAILABLE, sd.StoreUnavailable],
    ['SHUTTING_DOWN', grpc.status.UNAVAILABLE, sd.ShuttingDown],
  ];
  for (const [reason, code, Cls] of cases) {
    reset();
    script.UpdateSession = [{ error: statusError(code, reason, `because ${reason}`, { limit: 'x', current_version: '12' }) }];
    const err = await client.update('a', { set: { x: 'y' }, retries: 0 }).then(() => null, (e) => e);
    assert.ok(err instanceof Cls, `${reason} -> ${err && err.constructor.name}`);
    assert.ok(err instanceof sd.SessiondError);
    assert.equal(err.code, code);
    assert.equal(err.reason, reason);
    assert.equal(err.metadata.limit, 'x');
    assert.equal(err.details, `because ${reason}`);
    assert.equal(calls.UpdateSession, 1);
  }
  reset();
  script.UpdateSession = [{ error: statusError(grpc.status.ABORTED, 'VERSION_MISMATCH', 'm', { current_version: '18446744073709551615' }) }];
  const vm = await client.update('a', { expectedVersion: 1n }).catch((e) => e);
  assert.equal(vm.currentVersion, 18446744073709551615n);
});

test('a status without sessiond ErrorInfo is classed by its code', async () => {
  reset();
  script.GetSession = [{ error: statusError(grpc.status.PERMISSION_DENIED, null, 'no') }];
  const err = await client.get('a').catch((e) => e);
  assert.equal(err.constructor, sd.PermissionDenied);
  assert.equal(err.reason, null);
  assert.equal(err.codeName, 'PERMISSION_DENIED');
  // A code with no class of its own stays a plain SessiondError.
  script.GetSession = [{ error: statusError(grpc.status.INTERNAL, null, 'bug') }];
  const internal = await client.get('a').catch((e) => e);
  assert.equal(internal.constructor, sd.SessiondError);
  assert.equal(internal.codeName, 'INTERNAL');
});

test('reads are retried on any UNAVAILABLE, then succeed', async () => {
  reset();
  script.GetSession = [unavailable(null), unavailable('STORE_UNAVAILABLE'), { response: { session, fromCache: true } }];
  const s = await client.get('a');
  assert.equal(calls.GetSession, 3);
  assert.equal(s.version, 7n);
  assert.deepEqual(s.fields, { x: Buffer.from('1') });
  assert.equal(s.fromCache, true);
});

test('retries stop after `retries` extra attempts', async () => {
  reset();
  script.GetStats = [unavailable(null), unavailable(null), unavailable(null), { response: {} }];
  const err = await client.stats().catch((e) => e);
  assert.ok(err instanceof sd.Unavailable);
  assert.equal(calls.GetStats, 3, '1 try + 2 retries');
  const noRetry = await client.stats({ retries: 0 }).then((r) => r, (e) => e);
  assert.equal(noRetry.uptimeMs, 0, 'the 4th answer is the scripted success');
});

test('guarded writes are retried on any UNAVAILABLE; LockSession and unguarded writes on SHUTTING_DOWN only', async () => {
  // SHUTTING_DOWN: nothing was done, so even an unguarded write or a lock is sent again.
  reset();
  script.UpdateSession = [unavailable('SHUTTING_DOWN'), unavailable('SHUTTING_DOWN'), { response: { version: '9' } }];
  assert.equal((await client.update('a', { set: { x: 'y' } })).version, 9n);
  assert.equal(calls.UpdateSession, 3);
  reset();
  script.LockSession = [unavailable('SHUTTING_DOWN'), { response: { lockToken: 't', fencingToken: '1' } }];
  assert.equal((await client.lock('a')).lockToken, 't');
  assert.equal(calls.LockSession, 2);

  // STORE_UNAVAILABLE or a bare UNAVAILABLE may come after the write was
  // applied (or the lock granted): not retried for these.
  for (const reason of ['STORE_UNAVAILABLE', null]) {
    for (const method of ['UpdateSession', 'DeleteSession', 'LockSession']) {
      reset();
      script[method] = [unavailable(reason), { response: {} }];
      const call = {
        UpdateSession: () => client.update('a', { set: { x: 'y' } }),
        DeleteSession: () => client.delete('a'),
        LockSession: () => client.lock('a'),
      }[method];
      const err = await call().catch((e) => e);
      assert.ok(err instanceof sd.Unavailable && err.reason === reason, `${method} ${reason}`);
      assert.equal(calls[method], 1, `${method} not retried on ${reason}`);
      assert.equal(err.maybeApplied, false);
    }
  }

  // Guarded: a replay of a write that landed is refused, so it is retried;
  // the refusal that answers it is flagged maybeApplied.
  reset();
  script.DeleteSession = [unavailable(null), { response: { deleted: true } }];
  assert.deepEqual(await client.delete('a', { expectedVersion: 3 }), { deleted: true });
  assert.equal(calls.DeleteSession, 2);
  reset();
  script.UpdateSession = [
    unavailable('STORE_UNAVAILABLE'),
    { error: statusError(grpc.status.FAILED_PRECONDITION, 'LOCK_LOST', 'released') },
  ];
  const lost = await client.update('a', { set: { x: 'y' }, lockToken: 't', releaseLock: true }).catch((e) => e);
  assert.ok(lost instanceof sd.LockLost && lost.maybeApplied, 'the LockLost may answer our own first attempt');
  assert.equal(calls.UpdateSession, 2);
  // UnlockSession: the token names one grant; a replay cannot free another's lock.
  reset();
  script.UnlockSession = [unavailable(null), { response: {} }];
  await client.unlock('a', 't');
  assert.equal(calls.UnlockSession, 2);
});

const RESPONSES = {
  GetSession: { session, fromCache: false },
  GetStats: {},
  RefreshLock: {},
  UnlockSession: {},
  LockSession: { lockToken: 't', fencingToken: '1' },
  UpdateSession: { version: '9' },
  DeleteSession: { deleted: true },
  CheckRate: { remaining: '1' },
};

function rowId(row) {
  return `${row.call}[${row.guards.join('+') || 'unguarded'}] ${row.code}/${row.reason}`;
}

// The client method for a fixture row, with the row's guards.
function invoke(c, { call, guards }) {
  const g = {
    lockToken: guards.includes('lock_token') ? 't' : '',
    expectedVersion: guards.includes('expected_version') ? 3 : undefined,
    releaseLock: guards.includes('release_lock'),
    idempotencyKey: guards.includes('idempotency_key') ? 'evt-1' : '',
  };
  return {
    GetSession: () => c.get('a'),
    GetStats: () => c.stats(),
    RefreshLock: () => c.refresh('a', 't'),
    UnlockSession: () => c.unlock('a', 't'),
    LockSession: () => c.lock('a', { idempotencyKey: g.idempotencyKey }),
    UpdateSession: () => c.update('a', { set: { x: 'y' }, ...g }),
    DeleteSession: () => c.delete('a', g),
    CheckRate: () => c.checkRate('a'),
  }[call]();
}

test('shouldRetry agrees with every row of clients/retry-policy.json', () => {
  assert.ok(POLICY.rows.length > 100);
  for (const row of POLICY.rows) {
    const got = policy.shouldRetry(row.call, grpc.status[row.code], row.reason, {
      lockToken: row.guards.includes('lock_token'),
      expectedVersion: row.guards.includes('expected_version'),
      idempotencyKey: row.guards.includes('idempotency_key'),
    });
    assert.equal(got, row.retry, rowId(row));
  }
  for (const row of POLICY.outcome_unknown) {
    assert.equal(policy.outcomeUnknown(grpc.status[row.code], row.reason), row.unknown, String(row.reason));
  }
  for (const row of POLICY.conflicts) {
    assert.equal(policy.restartsConflict(row.reason, row.maybe_applied), row.restart, `${row.reason} ${row.maybe_applied}`);
  }
});

test('the client follows every row of clients/retry-policy.json', async () => {
  for (const row of POLICY.rows) {
    reset();
    script[row.call] = [
      { error: statusError(grpc.status[row.code], row.reason, 'scripted') },
      { response: RESPONSES[row.call] },
    ];
    const err = await invoke(client, row).then(() => null, (e) => e);
    if (row.retry) {
      assert.equal(err, null, `${rowId(row)}: ${err}`);
      assert.equal(calls[row.call], 2, rowId(row));
    } else {
      assert.ok(err instanceof sd.SessiondError, `${rowId(row)}: ${err}`);
      assert.equal(err.code, grpc.status[row.code], rowId(row));
      assert.equal(err.reason, row.reason, rowId(row));
      assert.equal(err.maybeApplied, false, rowId(row));
      assert.equal(calls[row.call], 1, rowId(row));
    }
  }
});

test('maybeApplied follows the outcome of the retried attempts (outcome_unknown rows)', async () => {
  for (const row of POLICY.outcome_unknown) {
    reset();
    // RefreshLock is retried on every UNAVAILABLE; the LOCK_LOST that answers
    // the retry may echo a first attempt that landed, unless it said SHUTTING_DOWN.
    script.RefreshLock = [
      { error: statusError(grpc.status[row.code], row.reason, 'first') },
      { error: statusError(grpc.status.FAILED_PRECONDITION, 'LOCK_LOST', 'gone') },
    ];
    const err = await client.refresh('a', 't').catch((e) => e);
    assert.ok(err instanceof sd.LockLost, String(row.reason));
    assert.equal(err.maybeApplied, row.unknown, String(row.reason));
  }
});

test('updateWithRetry follows the conflict rows', async () => {
  for (const row of POLICY.conflicts) {
    reset();
    const refusal = { error: statusError(grpc.status[row.code], row.reason, 'refused', { current_version: '8' }) };
    script.GetSession = [{ response: { session } }, { response: { session } }];
    // maybe_applied: an ambiguous first attempt, retried, then the refusal.
    script.UpdateSession = row.maybe_applied
      ? [unavailable(null), refusal, { response: { version: '9' } }]
      : [refusal, { response: { version: '9' } }];
    const c = row.maybe_applied ? client : noRetry;
    let runs = 0;
    const result = await c.updateWithRetry('a', (s) => {
      runs += 1;
      s.set('x', String(runs));
      return runs;
    }).catch((e) => e);
    const label = `${row.reason} maybe_applied=${row.maybe_applied}`;
    if (row.restart) {
      assert.equal(result, 2, label);
    } else {
      assert.ok(result instanceof sd.SessiondError && result.reason === row.reason, `${label}: ${result}`);
      assert.equal(runs, 1, label);
    }
  }
  // Classed by its code, an ABORTED without ErrorInfo is a VersionMismatch too.
  reset();
  script.GetSession = [{ response: { session } }, { response: { session } }];
  script.UpdateSession = [{ error: statusError(grpc.status.ABORTED, null, 'bare') }, { response: { version: '9' } }];
  assert.equal(await noRetry.updateWithRetry('a', (s) => { s.set('x', 'z'); return 'won'; }), 'won');
  assert.equal(calls.GetSession, 2);
});

test('backoff parameters and bounds are the fixture\'s', (t) => {
  const { backoff: b, conflict_backoff: cb } = POLICY;
  assert.equal(policy.DEFAULT_RETRIES, b.retries);
  const probe = new sd.Client('127.0.0.1:1');
  assert.equal(probe.retries, b.retries);
  probe.close();
  assert.equal(policy.DEFAULT_ATTEMPTS, cb.attempts);
  assert.deepEqual([policy.BACKOFF_BASE_MS, policy.BACKOFF_MAX_MS], [b.base_ms, b.max_ms]);
  assert.deepEqual([policy.CONFLICT_BASE_MS, policy.CONFLICT_MAX_MS], [cb.base_ms, cb.max_ms]);
  const samples = [
    ...b.samples.map((s) => [(n) => policy.backoffMs(n), s]),
    ...cb.samples.map((s) => [policy.conflictBackoffMs, s]),
  ];
  for (const [backoff, s] of samples) {
    for (let i = 0; i < 50; i++) {
      const ms = backoff(s.n);
      assert.ok(ms >= s.min_ms && ms <= s.max_ms, `n=${s.n}: ${ms}`);
    }
    // The random half spans exactly [c/2, c].
    t.mock.method(Math, 'random', () => 0);
    assert.equal(backoff(s.n), s.min_ms);
    t.mock.restoreAll();
    t.mock.method(Math, 'random', () => 1);
    assert.equal(backoff(s.n), s.max_ms);
    t.mock.restoreAll();
  }
});

test('uint64 values round-trip exactly', async () => {
  reset();
  script.UpdateSession = [{ response: { version: '18446744073709551615' } }];
  assert.equal((await client.update('a', { set: { x: 'y' }, expectedVersion: 18446744073709551614n })).version, 18446744073709551615n);
  assert.equal(requests.UpdateSession.expectedVersion, '18446744073709551614');
  reset();
  script.UpdateSession = [{ response: { version: '1' } }, { response: { version: '2' } }];
  await client.update('a', { set: { x: 'y' }, expectedVersion: 0 });
  assert.equal(requests.UpdateSession.expectedVersion, '0', 'expectedVersion 0 (create only) is sent');
  await client.update('a', { set: { x: 'y' } });
  assert.equal(requests.UpdateSession.expectedVersion, undefined, 'no expectedVersion: field absent');
  await assert.rejects(client.update('a', { expectedVersion: 2n ** 64n }), RangeError);
  await assert.rejects(client.update('a', { expectedVersion: -1 }), RangeError);
  await assert.rejects(client.update('a', { expectedVersion: 1.5 }), TypeError);
  reset();
  script.LockSession = [{ response: { lockToken: 't', fencingToken: '9007199254740993' } }];
  const l = await client.lock('a');
  assert.equal(l.fencingToken, 9007199254740993n);
  assert.equal(l.session, null);
});
