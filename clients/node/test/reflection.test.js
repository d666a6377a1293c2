'use strict';
// AdminService.GetStats through server reflection, with no .proto file: the
// request and response types are built from the FileDescriptorProtos the
// server returns (what `grpcurl -plaintext HOST:PORT sessiond.v1.AdminService/GetStats` does).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('./helpers/server');
const { ReflectionClient } = require('./helpers/reflection');
const sd = require('..');

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  if (server) await server.stop();
});

for (const version of ['v1', 'v1alpha']) {
  test(`grpc.reflection.${version} lists the services`, async () => {
    const rc = new ReflectionClient(server.target, version);
    try {
      const services = await rc.listServices();
      for (const s of ['sessiond.v1.SessionService', 'sessiond.v1.AdminService']) {
        assert.ok(services.includes(s), `${s} in ${services.join(', ')}`);
      }
    } finally {
      rc.close();
    }
  });
}

test('GetStats through reflection alone', async () => {
  // Some traffic first, so the counters have something to show.
  const client = new sd.Client(server.target);
  await client.update('reflected', { set: { a: '1' } });
  await client.get('reflected');
  await client.get('reflected');
  const viaClient = await client.stats();
  client.close();

  const rc = new ReflectionClient(server.target, 'v1');
  try {
    const files = await rc.filesFor('sessiond.v1.AdminService');
    const names = files.map((f) => f.name);
    assert.ok(names.includes('sessiond/v1/admin.proto'), names.join(', '));
    assert.ok(names.includes('google/protobuf/duration.proto'), 'its import came along or was fetched by name');

    const { message, type } = await rc.callUnary('sessiond.v1.AdminService/GetStats', {});
    // Field names as the descriptors spell them (proto names, snake_case).
    const stats = type.toObject(message, { longs: Number, defaults: true });
    assert.equal(type.fullName, '.sessiond.v1.GetStatsResponse');
    assert.equal(stats.instance_id, viaClient.instanceId);
    assert.equal(stats.store_backend, 'embedded');
    assert.ok(stats.version.length > 0);
    assert.ok(stats.uptime.seconds * 1000 + stats.uptime.nanos / 1e6 >= viaClient.uptimeMs);
    assert.ok(stats.cache.hits + stats.cache.misses >= 2, 'the two CACHED reads were counted');
    const methods = stats.rpcs.map((r) => r.method);
    for (const m of ['GetSession', 'UpdateSession', 'GetStats']) assert.ok(methods.includes(m), `${m} in ${methods}`);
    const upd = stats.rpcs.find((r) => r.method === 'UpdateSession');
    assert.ok(upd.calls >= 1);
    assert.equal(typeof upd.latency_us.p99, 'number');
    assert.equal(stats.store.healthy, true, 'the last store operation succeeded');
  } finally {
    rc.close();
  }
});
