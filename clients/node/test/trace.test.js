'use strict';
// Calls carry the caller's OpenTelemetry trace context (`traceparent`,
// `tracestate`) when @opentelemetry/api is installed: read from the metadata
// each call really sends (a grpc-js interceptor) to a real sessiond. And
// without the package, calls go out as before.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const api = require('@opentelemetry/api');
const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { startServer, uniqueId } = require('./helpers/server');
const sd = require('..');

// A context manager, so that a span made active stays the active one across
// awaits (an SDK's tracer provider registers one in an application).
api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const tracer = new BasicTracerProvider().getTracer('sessiond-client-tests');

/** A client whose every call's metadata lands in `sent`. */
function recordingClient(target, sent, options = {}) {
  const recorder = (opts, nextCall) => new grpc.InterceptingCall(nextCall(opts), {
    start(metadata, listener, next) {
      sent.push(metadata.getMap());
      next(metadata, listener);
    },
  });
  return new sd.Client(target, { ...options, interceptors: [recorder] });
}

function traceparent(span) {
  const sc = span.spanContext();
  return `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags.toString(16).padStart(2, '0')}`;
}

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  if (server) await server.stop();
});

test('calls within a span carry it; calls outside any span do not', async () => {
  const sent = [];
  const client = recordingClient(server.target, sent, { metadata: { 'x-request-id': 'r1' } });
  const id = uniqueId('trace');
  try {
    await client.update(id, { set: { n: '1' } });
    let turn;
    let inner;
    await tracer.startActiveSpan('turn', async (span) => {
      turn = span;
      const s = await client.get(id, { consistency: 'strong' });
      assert.equal(s.version, 1n);
      await tracer.startActiveSpan('inner', async (child) => {
        inner = child;
        await client.get(id);
        child.end();
      });
      span.end();
    });
    assert.equal(sent.length, 3);
    const [outside, inTurn, inInner] = sent;
    assert.equal(outside.traceparent, undefined);
    assert.equal(outside['x-request-id'], 'r1');
    assert.equal(inTurn.traceparent, traceparent(turn));
    assert.equal(inTurn['x-request-id'], 'r1', "the caller's metadata is kept");
    assert.equal(inInner.traceparent, traceparent(inner));
    assert.equal(inner.spanContext().traceId, turn.spanContext().traceId);
  } finally {
    client.close();
  }
});

test('a remote parent is passed on with its tracestate', async () => {
  const sent = [];
  const client = recordingClient(server.target, sent);
  const parent = api.trace.wrapSpanContext({
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    spanId: '00f067aa0ba902b7',
    traceFlags: api.TraceFlags.SAMPLED,
    isRemote: true,
    traceState: api.createTraceState('vendor=opaque'),
  });
  try {
    const ctx = api.trace.setSpan(api.context.active(), parent);
    await assert.rejects(api.context.with(ctx, () => client.get(uniqueId('trace'))), sd.SessionNotFound);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
    assert.equal(sent[0].tracestate, 'vendor=opaque');
  } finally {
    client.close();
  }
});

test('without @opentelemetry/api the client works and adds nothing', () => {
  // A fresh process in which requiring the package fails, as when it is not
  // installed.
  const script = `
    const Module = require('node:module');
    const load = Module._load;
    Module._load = function (request, ...rest) {
      if (request.startsWith('@opentelemetry/')) throw Object.assign(new Error('not installed'), { code: 'MODULE_NOT_FOUND' });
      return load.call(this, request, ...rest);
    };
    const grpc = require('@grpc/grpc-js');
    const sd = require(${JSON.stringify(path.resolve(__dirname, '..'))});
    if (require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'trace'))}).tracing) throw new Error('found the API');
    const sent = [];
    const recorder = (opts, nextCall) => new grpc.InterceptingCall(nextCall(opts), {
      start(md, listener, next) { sent.push(md.getMap()); next(md, listener); },
    });
    const c = new sd.Client(${JSON.stringify(server.target)}, { interceptors: [recorder] });
    (async () => {
      const id = 'node-untraced-' + process.pid;
      await c.update(id, { set: { n: '1' } });
      const s = await c.get(id, { consistency: 'strong' });
      c.close();
      if (s.version !== 1n || sent.length !== 2 || sent.some((m) => 'traceparent' in m)) process.exit(3);
      console.log('ok', sent.length);
    })().catch((e) => { console.error(e); process.exit(2); });
  `;
  const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60000 });
  assert.equal(out.trim(), 'ok 2');
});
