'use strict';
// Reads, writes, locks and the two read-modify-write helpers against a real sessiond.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, uniqueId, until } = require('./helpers/server');
const sd = require('..');

let server;
let client;
before(async () => {
  server = await startServer();
  client = new sd.Client(server.target, { timeoutMs: 5000 });
});
after(async () => {
  if (client) client.close();
  if (server) await server.stop();
});

test('update creates, get reads back, versions are bigint and count writes', async () => {
  const id = uniqueId('crud');
  const w1 = await client.update(id, { set: { name: 'Ada', blob: Buffer.from([0, 255, 1]) } });
  assert.equal(w1.version, 1n);
  assert.ok(w1.expiresAt instanceof Date && w1.expiresAt > new Date());

  const s = await client.get(id, { consistency: 'strong' });
  assert.equal(s.sessionId, id);
  assert.equal(s.version, 1n);
  assert.deepEqual(s.fields, { name: Buffer.from('Ada'), blob: Buffer.from([0, 255, 1]) });
  assert.ok(s.createdAt instanceof Date && s.updatedAt instanceof Date && s.expiresAt instanceof Date);
  assert.equal(s.fromCache, false, 'a STRONG read never comes from the cache');

  const w2 = await client.update(id, { set: { mood: 'curious' }, delete: ['blob'] });
  assert.equal(w2.version, 2n);
  const again = await client.get(id, { minVersion: w2.version });
  assert.equal(again.version, 2n);
  assert.deepEqual(again.fields, { name: Buffer.from('Ada'), mood: Buffer.from('curious') });

  const w3 = await client.update(id, { set: { only: 'me' }, replace: true });
  assert.equal(w3.version, 3n);
  assert.deepEqual((await client.get(id, { consistency: 'strong' })).fields, { only: Buffer.from('me') });

  assert.deepEqual(await client.delete(id), { deleted: true });
  assert.deepEqual(await client.delete(id), { deleted: false }, 'a repeated delete is harmless');
  await assert.rejects(client.get(id), sd.SessionNotFound);

  // Versions continue after a delete and re-create: never reused.
  const w4 = await client.update(id, { set: { name: 'Ada' }, expectedVersion: 0 });
  assert.ok(w4.version > 3n, `version after re-create is ${w4.version}`);
});

test('locked update: lock, write with the token and release in one step', async () => {
  const id = uniqueId('locked');
  const l1 = await client.lock(id, { leaseMs: 2000 });
  assert.equal(l1.session, null, 'locking a session that does not exist yet is allowed');
  assert.equal(typeof l1.lockToken, 'string');
  assert.ok(l1.lockToken.length > 0);
  assert.equal(typeof l1.fencingToken, 'bigint');
  assert.ok(l1.leaseExpiresAt instanceof Date);

  // Mandatory lock: a write without the token is refused while it is held.
  await assert.rejects(client.update(id, { set: { x: 'intruder' } }), sd.LockHeld);

  const w = await client.update(id, { set: { x: '1' }, lockToken: l1.lockToken, releaseLock: true });
  assert.equal(w.version, 1n);
  // Released: a write without a token goes through now.
  assert.equal((await client.update(id, { set: { y: '2' } })).version, 2n);

  const l2 = await client.lock(id, { leaseMs: 2000 });
  assert.ok(l2.fencingToken > l1.fencingToken, 'fencing tokens increase');
  assert.equal(l2.session.version, 2n, 'LockSession returns the session as it is now');
  assert.deepEqual(l2.session.fields, { x: Buffer.from('1'), y: Buffer.from('2') });
  const r = await client.refresh(id, l2.lockToken, { leaseMs: 3000 });
  assert.ok(r.leaseExpiresAt instanceof Date);
  await client.unlock(id, l2.lockToken);
  await assert.rejects(client.unlock(id, l2.lockToken), sd.LockLost, 'the token no longer holds the lock');
});

test('a queued waiter that gives up (AbortSignal) leaves the queue and is never granted the lock', async () => {
  const id = uniqueId('abandon');
  const held = await client.lock(id, { leaseMs: 5000 });
  const before = (await client.stats()).locks.waitsAbandoned;
  const ac = new AbortController();
  const waiter = client.lock(id, { waitMs: 10_000, signal: ac.signal }).then(() => 'granted', (e) => e);
  // Wait until the server has it queued.
  await until(async () => (await client.stats()).locks.waitingNow >= 1, 'the waiter is queued');
  ac.abort();
  const err = await waiter;
  assert.equal(err && err.name, 'AbortError');
  // Once the server has seen the caller go, a release must hand the lock to
  // nobody. (A release within a few ms of the cancel, before the server has
  // seen it, can still grant the lock to the departed caller; the server
  // passes it on as soon as it notices, so a try-once lock in between may
  // find it held. That window is not what this test is about.)
  await until(async () => (await client.stats()).locks.waitingNow === 0, 'the server saw the waiter leave');
  await client.unlock(id, held.lockToken);
  const next = await client.lock(id, { waitMs: 0 });
  await client.unlock(id, next.lockToken);
  await until(async () => (await client.stats()).locks.waitsAbandoned >= before + 1, 'the waiter counted as abandoned');
  await assert.rejects(client.get(id, { signal: AbortSignal.abort() }), { name: 'AbortError' });
});

test('withLock: snapshot, set/delete, write-and-release; no write when nothing changed; unlock on throw', async () => {
  const id = uniqueId('withlock');
  const first = await client.withLock(id, async (session) => {
    assert.equal(session.exists, false);
    assert.equal(session.version, 0n);
    assert.deepEqual({ ...session.fields }, {});
    assert.equal(typeof session.fencingToken, 'bigint');
    assert.ok(session.signal instanceof AbortSignal && !session.signal.aborted);
    session.set('greeting', 'hello').set('tmp', 'x');
    assert.deepEqual(session.get('greeting'), Buffer.from('hello'));
    return 'first';
  }, { leaseMs: 2000 });
  assert.equal(first, 'first');

  await client.withLock(id, (session) => {
    assert.equal(session.exists, true);
    assert.equal(session.version, 1n);
    assert.deepEqual(session.fields.greeting, Buffer.from('hello'));
    session.delete('tmp');
    session.set('greeting', Buffer.from('hi'));
  });
  let s = await client.get(id, { consistency: 'strong' });
  assert.equal(s.version, 2n);
  assert.deepEqual(s.fields, { greeting: Buffer.from('hi') });

  // Nothing changed: only unlocked, version unchanged, and the lock is free.
  await client.withLock(id, () => {});
  s = await client.get(id, { consistency: 'strong' });
  assert.equal(s.version, 2n);

  // The handler throws: its error comes out, nothing is written, the lock is released.
  await assert.rejects(
    client.withLock(id, (session) => {
      session.set('greeting', 'never written');
      throw new Error('handler failed');
    }),
    /handler failed/,
  );
  s = await client.get(id, { consistency: 'strong' });
  assert.equal(s.version, 2n);
  assert.deepEqual(s.fields, { greeting: Buffer.from('hi') });
  const l = await client.lock(id, { waitMs: 0 });
  await client.unlock(id, l.lockToken);

  // The final write is refused (a limit): the error comes out and the lock is released.
  const tooBig = await client.withLock(id, (session) => {
    session.set('huge', Buffer.alloc(64 * 1024 + 1));
  }, { leaseMs: 30_000 }).catch((e) => e);
  assert.ok(tooBig instanceof sd.InvalidArgument && tooBig.reason === 'LIMIT_EXCEEDED', String(tooBig));
  const l2 = await client.lock(id, { waitMs: 0 });
  await client.unlock(id, l2.lockToken);
  assert.equal((await client.get(id, { consistency: 'strong' })).version, 2n);
});

test('withLock serialises concurrent writers: no lost update', async () => {
  const id = uniqueId('serial');
  const clients = [0, 1, 2].map(() => new sd.Client(server.target));
  try {
    const n = 24;
    await Promise.all(Array.from({ length: n }, (_, i) =>
      clients[i % clients.length].withLock(id, async (session) => {
        const v = Number(session.fields.count?.toString() ?? '0');
        await new Promise((r) => setImmediate(r));
        session.set('count', String(v + 1));
      }, { leaseMs: 5000, waitMs: 20_000 }),
    ));
    const s = await client.get(id, { consistency: 'strong' });
    assert.equal(s.fields.count.toString(), String(n));
    assert.equal(s.version, BigInt(n));
  } finally {
    for (const c of clients) c.close();
  }
});

test('updateWithRetry under contention: final counter == acknowledged increments', async () => {
  const id = uniqueId('cas');
  const clients = [0, 1, 2, 3].map(() => new sd.Client(server.target));
  let acknowledged = 0;
  let refused = 0;
  let attempts = 0;
  try {
    const n = 60;
    await Promise.all(Array.from({ length: n }, async (_, i) => {
      try {
        await clients[i % clients.length].updateWithRetry(id, (session) => {
          attempts += 1;
          const v = Number(session.get('counter')?.toString() ?? '0');
          session.set('counter', String(v + 1));
        }, { attempts: 100 });
        acknowledged += 1;
      } catch (err) {
        if (!(err instanceof sd.VersionMismatch)) throw err;
        refused += 1;
      }
    }));
    const s = await client.get(id, { consistency: 'strong' });
    assert.equal(Number(s.fields.counter.toString()), acknowledged, 'every acknowledged increment, and only those');
    assert.equal(s.version, BigInt(acknowledged));
    assert.equal(acknowledged + refused, n);
    assert.ok(acknowledged > 0);
    assert.ok(attempts > n, `contention made some attempts retry (${attempts} attempts for ${n} increments)`);
  } finally {
    for (const c of clients) c.close();
  }
});

test('updateWithRetry gives up after `attempts` with VersionMismatch', async () => {
  const id = uniqueId('cas-giveup');
  await client.update(id, { set: { n: '0' } });
  let calls = 0;
  await assert.rejects(
    client.updateWithRetry(id, async (session) => {
      calls += 1;
      // Someone else writes between our read and our write, every time.
      await client.update(id, { set: { n: String(calls) } });
      session.set('n', 'mine');
    }, { attempts: 3 }),
    sd.VersionMismatch,
  );
  assert.equal(calls, 3);
  assert.equal((await client.get(id, { consistency: 'strong' })).fields.n.toString(), '3');
});

test('stats reflect the calls made', async () => {
  const st = await client.stats();
  assert.equal(st.storeBackend, 'embedded');
  assert.ok(st.instanceId.length > 0);
  assert.ok(st.uptimeMs >= 0);
  const byName = Object.fromEntries(st.rpcs.map((r) => [r.method, r]));
  assert.ok(byName.UpdateSession.calls > 0);
  assert.ok(byName.LockSession.calls > 0);
  assert.equal(typeof byName.UpdateSession.calls, 'number');
  assert.ok(st.locks.acquisitions > 0);
  assert.ok(st.locks.contended > 0, 'the concurrent tests contended');
  assert.equal(st.cache.feedHealthy, true, 'the embedded store always trusts its cache');
  assert.equal(st.cache.feedLosses, 0);
  assert.equal(st.store.healthy, true);
  assert.equal(st.store.durability, 'fsync', 'the embedded store fsyncs every write before answering');
  assert.equal(st.store.durabilityWait, 'fsync');
  assert.deepEqual(st.store.durabilityWarnings, []);
  assert.equal(st.store.durabilityFailures, 0);
  assert.equal(st.store.dataLosses, 0);
});
