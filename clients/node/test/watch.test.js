'use strict';
// watch(): WatchSession as an async iterator, against a real sessiond.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, uniqueId } = require('./helpers/server');
const sd = require('..');

let server;
let client;
let other;
before(async () => {
  server = await startServer();
  client = new sd.Client(server.target, { timeoutMs: 5000 });
  other = new sd.Client(server.target, { timeoutMs: 5000 });
});
after(async () => {
  if (client) client.close();
  if (other) other.close();
  if (server) await server.stop();
});

/** The next event of `events`, which must come within 10 s. */
async function next(events) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('no watch event in time')), 10_000);
  });
  try {
    const { value, done } = await Promise.race([events.next(), timeout]);
    assert.equal(done, false, 'the watch ended');
    return value;
  } finally {
    clearTimeout(timer);
  }
}

test('watch yields the snapshot, then every write and lock event in order', async () => {
  const id = uniqueId('watch');
  const events = client.watch(id, { includeValues: true });
  const first = await next(events);
  assert.equal(first.kind, 'snapshot');
  assert.equal(first.version, 0n);
  assert.equal(first.session, null);

  const w1 = await other.update(id, { set: { a: 'one' } });
  const changed = await next(events);
  assert.equal(changed.kind, 'changed');
  assert.equal(changed.version, w1.version);
  assert.deepEqual(changed.setFields, ['a']);
  assert.deepEqual(changed.values, { a: Buffer.from('one') });
  assert.equal(changed.created, true);

  const lock = await other.lock(id, { leaseMs: 5000 });
  const acquired = await next(events);
  assert.equal(acquired.kind, 'lock_acquired');
  assert.equal(acquired.fencingToken, lock.fencingToken);
  await other.update(id, { set: { b: 'two' }, delete: ['a'], lockToken: lock.lockToken, releaseLock: true });
  const second = await next(events);
  assert.deepEqual([second.kind, second.setFields, second.removedFields], ['changed', ['b'], ['a']]);
  const released = await next(events);
  assert.deepEqual([released.kind, released.fencingToken], ['lock_released', lock.fencingToken]);
  await other.delete(id);
  const deleted = await next(events);
  assert.deepEqual([deleted.kind, deleted.version], ['deleted', w1.version + 1n]);
  await events.return(); // cancels the stream
  assert.ok((await client.stats()).watch.eventsSent >= 6);
});

test('a watch resumes after the last version read, or resyncs', async () => {
  const id = uniqueId('resume');
  // Only events logged while the session is watched can be resumed from.
  let last;
  for await (const e of client.watch(id)) {
    if (e.kind === 'snapshot') {
      last = (await other.update(id, { set: { n: '1' } })).version;
      continue;
    }
    assert.deepEqual([e.kind, e.version], ['changed', last]);
    break; // stops the watch
  }
  await other.update(id, { set: { n: '2' } });
  await other.update(id, { set: { n: '3' } });
  const resumed = client.watch(id, { afterVersion: last });
  assert.equal((await next(resumed)).kind, 'resumed');
  assert.equal((await next(resumed)).version, last + 1n);
  assert.equal((await next(resumed)).version, last + 2n);
  await resumed.return();

  const gone = client.watch(id, { afterVersion: last + 1000n });
  const snap = await next(gone);
  assert.deepEqual([snap.kind, snap.resync, snap.session.version], ['snapshot', true, last + 2n]);
  await gone.return();
});

test('a watch of a bad id is refused, and an abort ends it', async () => {
  await assert.rejects(client.watch('a\nb').next(), sd.InvalidArgument);
  const controller = new AbortController();
  const events = client.watch(uniqueId('abort'), { signal: controller.signal });
  assert.equal((await next(events)).kind, 'snapshot');
  controller.abort(new Error('enough'));
  await assert.rejects(events.next(), /enough/);
});
