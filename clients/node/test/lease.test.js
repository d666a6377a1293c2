'use strict';
// withLock keeps the lease alive for handlers longer than the lease, and never
// writes once the lock is lost.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, uniqueId } = require('./helpers/server');
const sd = require('..');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

async function rpcCalls(method) {
  const st = await client.stats();
  const r = st.rpcs.find((x) => x.method === method);
  return r ? r.calls : 0;
}

test('a 1 s handler under a 300 ms lease: refreshed in the background, the write succeeds', async () => {
  const id = uniqueId('long');
  const refreshesBefore = await rpcCalls('RefreshLock');
  const other = new sd.Client(server.target);
  try {
    const started = Date.now();
    const result = await client.withLock(id, async (session) => {
      // Halfway through, someone else tries: the lock is still ours.
      await sleep(500);
      await assert.rejects(other.lock(id, { waitMs: 0 }), sd.LockHeld);
      await sleep(500);
      assert.equal(session.signal.aborted, false);
      session.set('answer', '42');
      return 'done';
    }, { leaseMs: 300 });
    assert.equal(result, 'done');
    assert.ok(Date.now() - started >= 1000);
  } finally {
    other.close();
  }
  const s = await client.get(id, { consistency: 'strong' });
  assert.deepEqual(s.fields, { answer: Buffer.from('42') });
  assert.equal(s.version, 1n);
  const refreshes = (await rpcCalls('RefreshLock')) - refreshesBefore;
  assert.ok(refreshes >= 5, `about one refresh per 100 ms (lease/3), saw ${refreshes}`);
});

test('a lost lease: the signal aborts and withLock rejects with LockLost without writing', async () => {
  const id = uniqueId('lost');
  await client.update(id, { set: { owner: 'nobody' } });
  const thief = new sd.Client(server.target);
  let aborted = null;
  try {
    const err = await client.withLock(id, async (session) => {
      // Block the event loop past the lease: no refresh can be sent, the lease runs out.
      const until = Date.now() + 600;
      while (Date.now() < until) { /* a CPU-bound step that forgot to yield */ }
      // Someone else takes the expired lock and writes.
      const l = await thief.lock(id, { leaseMs: 5000, waitMs: 0 });
      await thief.update(id, { set: { owner: 'thief' }, lockToken: l.lockToken, releaseLock: true });
      // The next refresh finds the lock lost and aborts the signal.
      await new Promise((resolve) => {
        if (session.signal.aborted) resolve();
        else session.signal.addEventListener('abort', resolve, { once: true });
      });
      aborted = session.signal.reason;
      session.set('owner', 'me');
      return 'should not be returned';
    }, { leaseMs: 300 }).then(() => null, (e) => e);

    assert.ok(err instanceof sd.LockLost, `rejected with ${err && err.name}`);
    assert.equal(err.reason, 'LOCK_LOST');
    assert.ok(aborted instanceof sd.LockLost, 'signal.reason is the LockLost of the refresh');
  } finally {
    thief.close();
  }
  const s = await client.get(id, { consistency: 'strong' });
  assert.equal(s.fields.owner.toString(), 'thief', "the old holder's write never landed");
  assert.equal(s.version, 2n);
});

test('a lease lost with no refresh noticing it: the final write is refused with LockLost', async () => {
  const id = uniqueId('lost-late');
  const err = await client.withLock(id, async (session) => {
    const until = Date.now() + 400; // lease 150 ms, and no chance to refresh
    while (Date.now() < until) { /* blocked */ }
    session.set('x', 'late');
  }, { leaseMs: 150 }).then(() => null, (e) => e);
  assert.ok(err instanceof sd.LockLost, `rejected with ${err && err.name}`);
  await assert.rejects(client.get(id, { consistency: 'strong' }), sd.SessionNotFound, 'nothing was written');
});
