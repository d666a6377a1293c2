'use strict';
// Turn policies and lock idempotency keys against a real sessiond: the newest
// waiter of a burst supersedes the older one and is granted with its payload;
// a lock key replayed gets the first grant; bad arguments are refused.

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

for (const [policy, debounceMs] of [[sd.TurnPolicy.LATEST_WINS, 0], [sd.TurnPolicy.DEBOUNCE, 200]]) {
  test(`${policy}: the newest waiter answers the burst with the older payloads`, async () => {
    const id = uniqueId('burst');
    const holder = await client.lock(id, { leaseMs: 5000 });
    const opts = { leaseMs: 5000, waitMs: 10000, policy, debounceMs };
    const older = client.lock(id, { ...opts, payload: 'm0' }).then((l) => l, (e) => e);
    await until(async () => (await client.stats()).locks.waitingNow >= 1, 'm0 is queued');
    const newer = client.lock(id, { ...opts, payload: Buffer.from('m1') });
    const err = await older;
    assert.ok(err instanceof sd.Superseded, String(err));
    assert.equal(err.reason, 'SUPERSEDED');
    await client.unlock(id, holder.lockToken);
    const got = await newer;
    assert.deepEqual(got.supersededPayloads, [Buffer.from('m0')]);
    assert.equal(got.supersededDropped, 0);
    assert.equal(got.replayed, false);
    await client.unlock(id, got.lockToken);
  });
}

test('bad turns are refused with their reasons', async () => {
  const id = uniqueId('bad-turn');
  const reason = (p) => p.then(() => null, (e) => e.reason);
  assert.equal(await reason(client.lock(id, { policy: 'LATEST_WINS' })), 'INVALID_TURN_POLICY');
  assert.equal(await reason(client.lock(id, { waitMs: 1000, payload: 'x' })), 'INVALID_TURN_POLICY');
  assert.equal(await reason(client.lock(id, { waitMs: 1000, policy: 'DEBOUNCE', debounceMs: 2000 })), 'INVALID_DEBOUNCE');
  assert.equal(
    await reason(client.lock(id, { waitMs: 1000, policy: 'LATEST_WINS', payload: Buffer.alloc(5000) })),
    'LIMIT_EXCEEDED',
  );
  await assert.rejects(client.lock(id, { waitMs: 1000, policy: 'SOMETIMES' }), TypeError);
});

test('a lock idempotencyKey replayed gets the first grant', async () => {
  const id = uniqueId('lock-key');
  const first = await client.lock(id, { leaseMs: 5000, idempotencyKey: 'evt-9' });
  const again = await client.lock(id, { leaseMs: 5000, idempotencyKey: 'evt-9' });
  assert.equal(first.replayed, false);
  assert.equal(again.replayed, true);
  assert.equal(again.lockToken, first.lockToken);
  assert.equal(again.fencingToken, first.fencingToken);
  const err = await client.lock(id, { leaseMs: 6000, idempotencyKey: 'evt-9' }).then(() => null, (e) => e);
  assert.equal(err.reason, 'IDEMPOTENCY_KEY_REUSED');
  await client.unlock(id, first.lockToken);
});

test('withLock takes the turn policy and the idempotency key', async () => {
  const id = uniqueId('withlock-turn');
  const holder = await client.lock(id, { leaseMs: 5000 });
  const opts = { leaseMs: 5000, waitMs: 10000, policy: 'LATEST_WINS' };
  const older = client.withLock(id, (s) => { s.set('answered', 'm0'); }, { ...opts, payload: 'm0' })
    .then((v) => v, (e) => e);
  await until(async () => (await client.stats()).locks.waitingNow >= 1, 'm0 is queued');
  const newer = client.withLock(id, (s) => {
    s.set('answered', 'm1');
    return s.lock.supersededPayloads.map(String);
  }, { ...opts, payload: 'm1' });
  assert.ok((await older) instanceof sd.Superseded);
  await client.unlock(id, holder.lockToken);
  assert.deepEqual(await newer, ['m0']);
  assert.equal(String((await client.get(id, { consistency: 'strong' })).fields.answered), 'm1');

  // The same event's key: the second run is handed the first grant, replayed,
  // whose lock the first run's write released: nothing is written twice.
  const seen = [];
  await client.withLock(id, (s) => { seen.push(s.lock.replayed); s.set('n', '1'); }, { idempotencyKey: 'event-1' });
  await assert.rejects(
    client.withLock(id, (s) => { seen.push(s.lock.replayed); s.set('n', '2'); }, { idempotencyKey: 'event-1' }),
    sd.LockLost,
  );
  assert.deepEqual(seen, [false, true]);
  assert.equal(String((await client.get(id, { consistency: 'strong' })).fields.n), '1');
});
