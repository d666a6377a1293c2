'use strict';
// The client's retry policy and error decoding, against a scripted stand-in
// for sessiond (a grpc-js server on the same protos): it can answer
// STORE_UNAVAILABLE, SHUTTING_DOWN or a bare UNAVAILABLE on demand, which a
// healthy embedded sessiond never does. Everything else is tested against the
// real server in the other files.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');
const { sessionService, adminService } = require('../lib/proto');
const sd = require('..');

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
});
after(() => {
  client.close();
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

test('writes are retried only when sessiond says STORE_UNAVAILABLE or SHUTTING_DOWN', async () => {
  reset();
  script.UpdateSession = [unavailable('STORE_UNAVAILABLE'), unavailable('SHUTTING_DOWN'), { response: { version: '9' } }];
  assert.equal((await client.update('a', { set: { x: 'y' } })).version, 9n);
  assert.equal(calls.UpdateSession, 3);

  // A bare UNAVAILABLE may come after the write was applied: not retried.
  for (const method of ['UpdateSession', 'LockSession', 'UnlockSession']) {
    reset();
    script[method] = [unavailable(null), { response: {} }];
    const call = {
      UpdateSession: () => client.update('a', { set: { x: 'y' } }),
      LockSession: () => client.lock('a'),
      UnlockSession: () => client.unlock('a', 't'),
    }[method];
    const err = await call().catch((e) => e);
    assert.ok(err instanceof sd.Unavailable && err.reason === null, method);
    assert.equal(calls[method], 1, `${method} not retried on a transport-level UNAVAILABLE`);
  }

  // An unguarded delete is harmless to repeat; a guarded one is not retried.
  reset();
  script.DeleteSession = [unavailable(null), { response: { deleted: false } }];
  assert.deepEqual(await client.delete('a'), { deleted: false });
  assert.equal(calls.DeleteSession, 2);
  reset();
  script.DeleteSession = [unavailable(null), { response: { deleted: true } }];
  assert.ok((await client.delete('a', { expectedVersion: 3 }).catch((e) => e)) instanceof sd.Unavailable);
  assert.equal(calls.DeleteSession, 1);
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
