'use strict';
// Starts a real sessiond for a test file: embedded store in a temp dir, a free
// port on 127.0.0.1, and waits until grpc.health.v1 answers SERVING.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');

const REPO = path.resolve(__dirname, '..', '..', '..', '..');
const SESSIOND_BIN = process.env.SESSIOND_BIN || path.join(REPO, 'target', 'debug', 'sessiond');

const health = protobuf.parse(`
  syntax = "proto3";
  package grpc.health.v1;
  message HealthCheckRequest { string service = 1; }
  message HealthCheckResponse {
    enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
    ServingStatus status = 1;
  }
`).root;
const HealthReq = health.lookupType('grpc.health.v1.HealthCheckRequest');
const HealthRes = health.lookupType('grpc.health.v1.HealthCheckResponse');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** One grpc.health.v1.Health/Check; resolves the status name or rejects. */
function healthCheck(target, service = '', timeoutMs = 1000) {
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (m) => Buffer.from(HealthReq.encode(HealthReq.create(m)).finish()),
      (b) => HealthRes.toObject(HealthRes.decode(b), { enums: String, defaults: true }),
      { service },
      { deadline: Date.now() + timeoutMs },
      (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(res.status);
      },
    );
  });
}

/**
 * Starts sessiond. `args` are added to the standard ones; `env` to the
 * environment. Resolves { target, port, dir, proc, output(), stop() }.
 */
async function startServer({ args = [], env = {}, readyTimeoutMs = 30_000 } = {}) {
  if (!fs.existsSync(SESSIOND_BIN)) {
    throw new Error(`sessiond binary not found at ${SESSIOND_BIN}: build it (cargo build) or set SESSIOND_BIN`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-node-'));
  const port = await freePort();
  const target = `127.0.0.1:${port}`;
  const argv = ['--listen', target, '--db-path', path.join(dir, 's.redb'), '--lease-min', '50ms', ...args];
  let output = '';
  const proc = spawn(SESSIOND_BIN, argv, {
    env: { ...process.env, SESSIOND_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => (output += d));
  proc.stderr.on('data', (d) => (output += d));
  let exited = null;
  const exitPromise = new Promise((resolve) => proc.on('exit', (code, signal) => {
    exited = { code, signal };
    resolve(exited);
  }));

  const stop = async (signal = 'SIGTERM') => {
    if (exited) return exited;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    const r = await exitPromise;
    clearTimeout(timer);
    return r;
  };
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });

  const deadline = Date.now() + readyTimeoutMs;
  let last = null;
  for (;;) {
    if (exited) {
      cleanup();
      throw new Error(`sessiond exited early (${JSON.stringify(exited)}): ${argv.join(' ')}\n${output}`);
    }
    try {
      const status = await healthCheck(target);
      if (status === 'SERVING') break;
      last = new Error(`health: ${status}`);
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      await stop('SIGKILL');
      cleanup();
      throw new Error(`sessiond not SERVING after ${readyTimeoutMs} ms (${last && last.message})\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    target,
    port,
    dir,
    proc,
    output: () => output,
    exited: () => exited,
    waitExit: () => exitPromise,
    stop: async (signal) => {
      const r = await stop(signal);
      cleanup();
      return r;
    },
  };
}

let counter = 0;
/** A session id unique to this process and call. */
function uniqueId(prefix = 's') {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/** Polls `cond` every 10 ms; fails after 5 s. */
async function until(cond, what) {
  const deadline = Date.now() + 5000;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

module.exports = { REPO, SESSIOND_BIN, startServer, healthCheck, freePort, uniqueId, until };
