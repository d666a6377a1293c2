'use strict';
// W3C trace context on outgoing calls. When @opentelemetry/api is installed
// (an optional peer dependency: the application's own copy is the one whose
// context holds its spans), every call carries the caller's active span as
// `traceparent` (and its `tracestate`), so sessiond's span of the call,
// exported when sessiond runs with --otlp-endpoint, is a child of the
// caller's. Without the package, or outside any span, nothing is added.
//
// The header is written here, from the span context, rather than through the
// API's global propagator: that one does nothing until an SDK registers one,
// and sessiond reads only the W3C trace context anyway.

let api = null;
try {
  // eslint-disable-next-line global-require
  api = require('@opentelemetry/api');
} catch {
  api = null;
}

/** Adds the active span's trace context to `md` (a grpc.Metadata). */
function addTraceContext(md) {
  if (api === null) return;
  const sc = api.trace.getSpanContext(api.context.active());
  if (!sc || !api.isSpanContextValid(sc)) return;
  const flags = (sc.traceFlags & 0xff).toString(16).padStart(2, '0');
  md.set('traceparent', `00-${sc.traceId}-${sc.spanId}-${flags}`);
  const state = sc.traceState ? sc.traceState.serialize() : '';
  if (state) md.set('tracestate', state);
}

/** Whether @opentelemetry/api was found. */
const tracing = api !== null;

module.exports = { addTraceContext, tracing };
