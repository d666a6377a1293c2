'use strict';
// AdminService's operator calls against a real sessiond: inspect a held lock,
// force it open (the old holder gets LockLost), list by prefix, purge.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, uniqueId } = require('./helpers/server');
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

test('inspect, forceUnlock, listSessions and purge', async () => {
  const base = `${uniqueId('admin')}/`;
  const ids = Array.from({ length: 12 }, (_, i) => `${base}${i}`);
  for (const id of ids) await client.update(id, { set: { n: '1' } });
  const held = await client.lock(ids[0], { leaseMs: 30_000 });

  const seen = await client.inspect(ids[0]);
  assert.equal(seen.exists, true);
  assert.equal(seen.version, 1n);
  assert.equal(seen.fieldCount, 1);
  assert.equal(seen.sizeBytes, 2);
  assert.equal(seen.lock.fencingToken, held.fencingToken);
  assert.ok(seen.lock.heldSince instanceof Date);
  assert.ok((await client.stats()).instanceId.startsWith(seen.lock.instance));
  assert.ok(!JSON.stringify(seen, (_, v) => (typeof v === 'bigint' ? String(v) : v)).includes(held.lockToken));

  assert.equal(await client.forceUnlock(ids[0]), held.fencingToken);
  assert.equal(await client.forceUnlock(ids[0]), null);
  await assert.rejects(
    client.update(ids[0], { set: { n: '2' }, lockToken: held.lockToken }),
    (e) => e instanceof sd.LockLost,
  );

  const page = await client.listPage(base, { pageSize: 5 });
  assert.ok(page.sessionIds.length <= 5 && page.nextPageToken !== '');
  assert.deepEqual((await client.listSessions(base, { pageSize: 5 })).sort(), [...ids].sort());
  await assert.rejects(client.listPage(base, { pageToken: 'nope' }), (e) => e.reason === 'INVALID_PAGE_TOKEN');

  assert.equal(await client.purge(base, { pageSize: 5 }), ids.length);
  assert.deepEqual(await client.listSessions(base), []);
  assert.ok((await client.stats()).locks.forcedReleases >= 1);
});
