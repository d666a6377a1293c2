'use strict';
// Every ErrorInfo reason sessiond produces, provoked for real against a running
// server, arrives as the right error class with its gRPC code and reason.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { status } = require('@grpc/grpc-js');
const { startServer, uniqueId, freePort } = require('./helpers/server');
const sd = require('..');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let server;
let client;
before(async () => {
  server = await startServer();
  client = new sd.Client(server.target, { timeoutMs: 5000, retries: 0 });
});
after(async () => {
  if (client) client.close();
  if (server) await server.stop();
});

/** Awaits a promise that must reject with `Cls`, `code` and `reason`; returns the error. */
async function expectError(promise, Cls, code, reason) {
  const err = await promise.then(
    (v) => assert.fail(`expected ${reason}, got a success: ${JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? String(x) : x))}`),
    (e) => e,
  );
  assert.ok(err instanceof Cls, `expected ${Cls.name} for ${reason}, got ${err.name}: ${err.message}`);
  assert.ok(err instanceof sd.SessiondError);
  assert.equal(err.code, code, `${reason}: code ${err.codeName}`);
  assert.equal(err.reason, reason);
  assert.equal(typeof err.details, 'string');
  assert.ok(err.details.length > 0, `${reason} has a message`);
  return err;
}

const INVALID = [sd.InvalidArgument, status.INVALID_ARGUMENT];

test('INVALID_SESSION_ID: empty, control characters, longer than 256 bytes', async () => {
  for (const bad of ['', 'a\nb', 'tab\there', '\u007f', 'x'.repeat(257), 'é'.repeat(129)]) {
    await expectError(client.get(bad), ...INVALID, 'INVALID_SESSION_ID');
  }
  await expectError(client.update('', { set: { a: '1' } }), ...INVALID, 'INVALID_SESSION_ID');
  await expectError(client.lock('bad\u0000id'), ...INVALID, 'INVALID_SESSION_ID');
  await expectError(client.delete('x'.repeat(300)), ...INVALID, 'INVALID_SESSION_ID');
  // 256 bytes is fine.
  await expectError(client.get('x'.repeat(256)), sd.SessionNotFound, status.NOT_FOUND, 'SESSION_NOT_FOUND');
});

test('INVALID_FIELD: bad names, a name both set and deleted', async () => {
  const id = uniqueId('field');
  await expectError(client.update(id, { set: { '': 'v' } }), ...INVALID, 'INVALID_FIELD');
  await expectError(client.update(id, { set: { 'a\u0001b': 'v' } }), ...INVALID, 'INVALID_FIELD');
  await expectError(client.update(id, { delete: ['n'.repeat(257)] }), ...INVALID, 'INVALID_FIELD');
  await expectError(client.update(id, { set: { a: '1' }, delete: ['a'] }), ...INVALID, 'INVALID_FIELD');
  await expectError(client.get(id), sd.SessionNotFound, status.NOT_FOUND, 'SESSION_NOT_FOUND');
});

test('INVALID_LEASE: below --lease-min and above --lease-max', async () => {
  const id = uniqueId('lease');
  await expectError(client.lock(id, { leaseMs: 10 }), ...INVALID, 'INVALID_LEASE');
  await expectError(client.lock(id, { leaseMs: 6 * 60 * 1000 }), ...INVALID, 'INVALID_LEASE');
  const l = await client.lock(id, { leaseMs: 50 }); // exactly the minimum is fine
  await expectError(client.refresh(id, l.lockToken, { leaseMs: 1 }), ...INVALID, 'INVALID_LEASE');
});

test('INVALID_WAIT: above --wait-max', async () => {
  await expectError(client.lock(uniqueId('wait'), { waitMs: 61_000, timeoutMs: 1000 }), ...INVALID, 'INVALID_WAIT');
});

test('INVALID_LOCK_TOKEN: malformed, missing where required, release_lock without a token', async () => {
  const id = uniqueId('token');
  await expectError(client.unlock(id, ''), ...INVALID, 'INVALID_LOCK_TOKEN');
  await expectError(client.refresh(id, ''), ...INVALID, 'INVALID_LOCK_TOKEN');
  await expectError(client.unlock(id, 'not a token!'), ...INVALID, 'INVALID_LOCK_TOKEN');
  await expectError(client.update(id, { set: { a: '1' }, lockToken: 't'.repeat(65) }), ...INVALID, 'INVALID_LOCK_TOKEN');
  await expectError(client.update(id, { set: { a: '1' }, releaseLock: true }), ...INVALID, 'INVALID_LOCK_TOKEN');
  await expectError(client.delete(id, { releaseLock: true }), ...INVALID, 'INVALID_LOCK_TOKEN');
});

test('LIMIT_EXCEEDED: a value above --max-field-bytes names the limit, nothing is written', async () => {
  const id = uniqueId('limit');
  await client.update(id, { set: { small: 'ok' } });
  const err = await expectError(
    client.update(id, { set: { big: Buffer.alloc(64 * 1024 + 1), other: 'x' } }),
    ...INVALID,
    'LIMIT_EXCEEDED',
  );
  assert.equal(err.metadata.limit, 'max_field_bytes');
  const s = await client.get(id, { consistency: 'strong' });
  assert.equal(s.version, 1n);
  assert.deepEqual(Object.keys(s.fields), ['small']);
});

test('SESSION_NOT_FOUND', async () => {
  await expectError(client.get(uniqueId('missing')), sd.SessionNotFound, status.NOT_FOUND, 'SESSION_NOT_FOUND');
  await expectError(client.get(uniqueId('missing'), { consistency: 'strong' }), sd.SessionNotFound, status.NOT_FOUND, 'SESSION_NOT_FOUND');
});

test('VERSION_MISMATCH: stale expected_version, create-only on an existing session', async () => {
  const id = uniqueId('cas');
  await client.update(id, { set: { a: '1' }, expectedVersion: 0 });
  await client.update(id, { set: { a: '2' }, expectedVersion: 1n });
  const err = await expectError(client.update(id, { set: { a: 'stale' }, expectedVersion: 1n }), sd.VersionMismatch, status.ABORTED, 'VERSION_MISMATCH');
  assert.equal(err.currentVersion, 2n);
  await expectError(client.update(id, { set: { a: 'again' }, expectedVersion: 0 }), sd.VersionMismatch, status.ABORTED, 'VERSION_MISMATCH');
  await expectError(client.delete(id, { expectedVersion: 5 }), sd.VersionMismatch, status.ABORTED, 'VERSION_MISMATCH');
  assert.equal((await client.get(id, { consistency: 'strong' })).fields.a.toString(), '2');
});

test('LOCK_HELD: try-once lock, and writes without the token while locked', async () => {
  const id = uniqueId('held');
  const held = await client.lock(id, { leaseMs: 5000 });
  await expectError(client.lock(id, { waitMs: 0 }), sd.LockHeld, status.FAILED_PRECONDITION, 'LOCK_HELD');
  await expectError(client.update(id, { set: { a: '1' } }), sd.LockHeld, status.FAILED_PRECONDITION, 'LOCK_HELD');
  await expectError(client.update(id, { set: { a: '1' }, expectedVersion: 0 }), sd.LockHeld, status.FAILED_PRECONDITION, 'LOCK_HELD');
  await expectError(client.delete(id), sd.LockHeld, status.FAILED_PRECONDITION, 'LOCK_HELD');
  await client.unlock(id, held.lockToken);
});

test('LOCK_LOST: an expired lease, a released token, a token taken over', async () => {
  const id = uniqueId('lost');
  const l1 = await client.lock(id, { leaseMs: 60 });
  await sleep(250);
  await expectError(client.refresh(id, l1.lockToken), sd.LockLost, status.FAILED_PRECONDITION, 'LOCK_LOST');
  await expectError(client.update(id, { set: { a: '1' }, lockToken: l1.lockToken }), sd.LockLost, status.FAILED_PRECONDITION, 'LOCK_LOST');

  const l2 = await client.lock(id, { leaseMs: 5000 });
  await expectError(client.unlock(id, l1.lockToken), sd.LockLost, status.FAILED_PRECONDITION, 'LOCK_LOST');
  await expectError(client.delete(id, { lockToken: l1.lockToken }), sd.LockLost, status.FAILED_PRECONDITION, 'LOCK_LOST');
  await client.unlock(id, l2.lockToken);
  await expectError(client.unlock(id, l2.lockToken), sd.LockLost, status.FAILED_PRECONDITION, 'LOCK_LOST');
  await expectError(client.update(id, { set: { a: '1' }, lockToken: l2.lockToken, releaseLock: true }), sd.LockLost, status.FAILED_PRECONDITION, 'LOCK_LOST');
});

test('LOCK_WAIT_TIMEOUT: the FIFO wait runs out', async () => {
  const id = uniqueId('timeout');
  const held = await client.lock(id, { leaseMs: 5000 });
  const started = Date.now();
  await expectError(client.lock(id, { waitMs: 200 }), sd.LockWaitTimeout, status.DEADLINE_EXCEEDED, 'LOCK_WAIT_TIMEOUT');
  assert.ok(Date.now() - started >= 150, 'it did wait');
  await client.unlock(id, held.lockToken);
});

test('OVERLOADED: beyond --max-concurrent-calls a call is refused at once', async () => {
  const small = await startServer({ args: ['--max-concurrent-calls', '1'] });
  const c = new sd.Client(small.target, { timeoutMs: 5000, retries: 0 });
  try {
    const id = uniqueId('busy');
    const held = await c.lock(id, { leaseMs: 5000 });
    // This waiter occupies the only call slot for up to 2 s...
    const waiter = c.lock(id, { waitMs: 2000 }).then(() => 'granted', (e) => e);
    await sleep(200);
    // ...so the next call is shed.
    await expectError(c.get(id), sd.Overloaded, status.RESOURCE_EXHAUSTED, 'OVERLOADED');
    const w = await waiter;
    assert.ok(w instanceof sd.LockWaitTimeout, `the waiter ended with ${w && w.name}`);
    await c.unlock(id, held.lockToken);
  } finally {
    c.close();
    await small.stop();
  }
});

test('RATE_LIMITED: a burst is admitted, then refused with when to come back', async () => {
  const id = uniqueId('rate');
  const opts = { name: 'replies', perSecond: 10, burst: 2 };
  const first = await client.checkRate(id, opts);
  assert.equal(first.remaining, 1);
  assert.ok(first.resetAfterMs > 0 && first.resetAfterMs <= 200, String(first.resetAfterMs));
  assert.equal((await client.checkRate(id, opts)).remaining, 0);
  const e = await expectError(client.checkRate(id, opts), sd.RateLimited, status.RESOURCE_EXHAUSTED, 'RATE_LIMITED');
  assert.equal(e.limit, 'replies');
  assert.ok(e.retryAfterMs >= 1 && e.retryAfterMs <= 100, String(e.retryAfterMs));
  await new Promise((resolve) => setTimeout(resolve, e.retryAfterMs));
  assert.equal((await client.checkRate(id, opts)).remaining, 0);
  const ns = await client.checkRate('', { ...opts, name: uniqueId('ns'), namespaceScope: true });
  assert.equal(ns.remaining, 1);
  await expectError(
    client.checkRate(id, { perSecond: 0 }),
    sd.InvalidArgument,
    status.INVALID_ARGUMENT,
    'INVALID_RATE_LIMIT',
  );
});

test('RATE_LIMITED: lock checks its rateLimit before queueing', async () => {
  const id = uniqueId('rate-lock');
  const rateLimit = { name: 'locks', perSecond: 0.01, burst: 1 };
  const held = await client.lock(id, { leaseMs: 5000, rateLimit });
  const started = Date.now();
  const e = await expectError(
    client.lock(id, { waitMs: 5000, rateLimit }),
    sd.RateLimited,
    status.RESOURCE_EXHAUSTED,
    'RATE_LIMITED',
  );
  assert.ok(Date.now() - started < 2000, 'refused at once, never queued');
  assert.equal(e.limit, 'locks');
  await client.unlock(id, held.lockToken);
});

test('QUOTA_EXCEEDED: a write beyond --max-sessions-per-namespace writes nothing', async () => {
  const small = await startServer({ args: ['--max-sessions-per-namespace', '1'] });
  const c = new sd.Client(small.target, { timeoutMs: 5000 });
  try {
    await c.update(uniqueId('only'), { set: { a: Buffer.from('1') } });
    const extra = uniqueId('extra');
    const e = await expectError(
      c.update(extra, { set: { a: Buffer.from('1') } }),
      sd.QuotaExceeded,
      status.RESOURCE_EXHAUSTED,
      'QUOTA_EXCEEDED',
    );
    assert.deepEqual([e.quota, e.limit, e.usage], ['sessions', 1n, 1n]);
    await expectError(c.get(extra), sd.SessionNotFound, status.NOT_FOUND, 'SESSION_NOT_FOUND');
    const { quotas } = await c.stats();
    assert.deepEqual(
      [quotas.maxSessionsPerNamespace, quotas.sessionRefusals, quotas.byteRefusals],
      [1, 1, 0],
    );
  } finally {
    c.close();
    await small.stop();
  }
});

test('UNAUTHENTICATED and NAMESPACE_DENIED: tokens grant namespaces', async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const telegram = 'telegram-bot-token-0001';
  const slack = 'slack-and-line-token-01';
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-auth-')), 'tokens');
  fs.writeFileSync(file, `${telegram} telegram\n${slack} slack,line\n`);
  const authed = await startServer({ args: ['--auth-tokens-file', file] });
  const anonymous = new sd.Client(authed.target, { timeoutMs: 5000, retries: 0 });
  const wrongNs = new sd.Client(authed.target, {
    timeoutMs: 5000, retries: 0, metadata: { authorization: `Bearer ${slack}`, 'sessiond-namespace': 'telegram' },
  });
  const t = new sd.Client(authed.target, { timeoutMs: 5000, metadata: { authorization: `Bearer ${telegram}` } });
  const s = new sd.Client(authed.target, { timeoutMs: 5000, metadata: { authorization: `Bearer ${slack}` } });
  try {
    await expectError(anonymous.get('u'), sd.Unauthenticated, status.UNAUTHENTICATED, 'UNAUTHENTICATED');
    await expectError(wrongNs.get('u'), sd.PermissionDenied, status.PERMISSION_DENIED, 'NAMESPACE_DENIED');
    // The same id under two tokens: two sessions.
    await t.update('u', { set: { who: 'telegram' } });
    await s.update('u', { set: { who: 'slack' } });
    assert.equal((await t.get('u')).fields.who.toString(), 'telegram');
    assert.equal((await s.get('u')).fields.who.toString(), 'slack');
  } finally {
    for (const c of [anonymous, wrongNs, t, s]) c.close();
    await authed.stop();
  }
});

test('SHUTTING_DOWN: a caller queued for a lock when the server drains', async () => {
  const doomed = await startServer();
  const c = new sd.Client(doomed.target, { timeoutMs: 5000, retries: 0 });
  try {
    const id = uniqueId('drain');
    await c.lock(id, { leaseMs: 30_000 });
    const waiter = c.lock(id, { waitMs: 20_000 }).then(() => 'granted', (e) => e);
    await sleep(200);
    doomed.proc.kill('SIGTERM');
    const err = await waiter;
    assert.ok(err instanceof sd.ShuttingDown, `got ${err && err.name}: ${err && err.message}`);
    assert.ok(err instanceof sd.Unavailable);
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(err.reason, 'SHUTTING_DOWN');
  } finally {
    c.close();
    await doomed.stop();
  }
});

test('STORE_UNAVAILABLE: a Redis store that cannot be reached', async () => {
  const deadPort = await freePort(); // nothing listens there
  const s = await startServer({
    args: ['--store', 'redis', '--redis-url', `redis://127.0.0.1:${deadPort}/0`, '--redis-timeout', '300ms'],
  });
  const c = new sd.Client(s.target, { timeoutMs: 5000, retries: 0 });
  try {
    const id = uniqueId('nostore');
    await expectError(c.update(id, { set: { a: '1' } }), sd.StoreUnavailable, status.UNAVAILABLE, 'STORE_UNAVAILABLE');
    await expectError(c.lock(id), sd.StoreUnavailable, status.UNAVAILABLE, 'STORE_UNAVAILABLE');
    await expectError(c.get(id, { consistency: 'strong' }), sd.StoreUnavailable, status.UNAVAILABLE, 'STORE_UNAVAILABLE');
    // Reads are retried; with retries the error is the same once they run out.
    const err = await expectError(c.get(id, { consistency: 'strong', retries: 2 }), sd.StoreUnavailable, status.UNAVAILABLE, 'STORE_UNAVAILABLE');
    assert.ok(err instanceof sd.Unavailable);
  } finally {
    c.close();
    await s.stop();
  }
});
