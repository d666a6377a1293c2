'use strict';
// Field operations and idempotency keys against a real sessiond: the same
// names as the proto and the Python client.

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

test('ops count, append and set a flag in one call', async () => {
  const id = uniqueId('ops');
  const r = await client.update(id, {
    ops: [sd.increment('turns'), sd.append('history', 'hi', 2), sd.setIfAbsent('greeted', 'yes')],
  });
  assert.equal(r.version, 1n);
  assert.deepEqual(r.opValues[0], Buffer.from('1'));
  assert.deepEqual(sd.entries(r.opValues[1]), [Buffer.from('hi')]);
  assert.deepEqual(r.opValues[2], Buffer.from('yes'));
  await client.update(id, { ops: [sd.append('history', 'how', 2)] });
  const last = await client.update(id, { ops: [sd.append('history', 'are', 2), sd.increment('turns', -3n)] });
  assert.deepEqual(sd.entries(last.opValues[0]), [Buffer.from('how'), Buffer.from('are')]);
  assert.deepEqual(last.opValues[1], Buffer.from('-2'));
  const s = await client.get(id, { consistency: 'strong' });
  assert.deepEqual(sd.entries(s.fields.history), [Buffer.from('how'), Buffer.from('are')]);

  const notInt = await client.update(id, { ops: [sd.increment('greeted')] }).catch((e) => e);
  assert.ok(notInt instanceof sd.InvalidArgument);
  assert.equal(notInt.reason, 'FIELD_NOT_INTEGER');
  assert.equal(notInt.metadata.field, 'greeted');
  await client.update(id, { set: { big: (2n ** 63n - 1n).toString() } });
  const over = await client.update(id, { ops: [sd.increment('big')] }).catch((e) => e);
  assert.equal(over.reason, 'INTEGER_OVERFLOW');
  const notList = await client.update(id, { ops: [sd.append('big', 'x', 3)] }).catch((e) => e);
  assert.equal(notList.reason, 'FIELD_NOT_LIST');
  assert.throws(() => sd.increment('n', 2n ** 63n), RangeError);
  assert.throws(() => sd.entries(Buffer.from('hello')), TypeError);
});

test('idempotency keys answer repeats with the first answer', async () => {
  const id = uniqueId('idem');
  const calls = Array.from({ length: 20 }, () =>
    client.update(id, { ops: [sd.increment('n')], idempotencyKey: 'evt-1' }));
  const answers = await Promise.all(calls);
  assert.ok(answers.every((a) => a.version === 1n && a.opValues[0].equals(Buffer.from('1'))));
  const reused = await client.update(id, { ops: [sd.increment('n', 2)], idempotencyKey: 'evt-1' }).catch((e) => e);
  assert.equal(reused.reason, 'IDEMPOTENCY_KEY_REUSED');
  assert.deepEqual(await client.delete(id, { idempotencyKey: 'del-1' }), { deleted: true });
  await client.update(id, { set: { a: '1' } });
  assert.deepEqual(await client.delete(id, { idempotencyKey: 'del-1' }), { deleted: true });
  const s = await client.get(id, { consistency: 'strong' });
  assert.deepEqual(s.fields, { a: Buffer.from('1') });
});
