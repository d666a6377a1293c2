'use strict';
// The package ships what it needs: the protos inside it are the repository's,
// and (under run-tests.sh) a copy installed from the folder works on its own.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { REPO, startServer, uniqueId } = require('./helpers/server');

function listProtos(dir, base = dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return listProtos(p, base);
    return e.name.endsWith('.proto') ? [path.relative(base, p)] : [];
  }).sort();
}

test('proto/ in the package is identical to the repository proto/ (npm run sync-protos)', () => {
  const repo = path.join(REPO, 'proto');
  const pkg = path.join(__dirname, '..', 'proto');
  assert.deepEqual(listProtos(pkg), listProtos(repo));
  for (const f of listProtos(repo)) {
    assert.equal(fs.readFileSync(path.join(pkg, f), 'utf8'), fs.readFileSync(path.join(repo, f), 'utf8'), f);
  }
});

test('package.json ships the code, types and protos', () => {
  const pkg = require('../package.json');
  for (const f of ['index.js', 'index.d.ts', 'lib/', 'proto/']) assert.ok(pkg.files.includes(f), f);
  assert.equal(pkg.main, 'index.js');
  assert.equal(pkg.types, 'index.d.ts');
});

const installed = process.env.SESSIOND_CLIENT_NODE_MODULES;
test('the copy installed into a scratch project talks to sessiond', { skip: !installed && 'run by run-tests.sh, which installs the package first' }, async () => {
  const dir = path.join(installed, '@sessiond', 'client');
  assert.ok(!fs.lstatSync(dir).isSymbolicLink(), 'a real copy, not a link into this checkout');
  assert.ok(fs.existsSync(path.join(dir, 'proto', 'sessiond', 'v1', 'session.proto')));
  const { Client, SessionNotFound } = require(dir);
  const server = await startServer();
  const client = new Client(server.target);
  try {
    const id = uniqueId('installed');
    await assert.rejects(client.get(id), SessionNotFound);
    assert.equal((await client.update(id, { set: { ok: 'yes' } })).version, 1n);
    assert.equal((await client.stats()).storeBackend, 'embedded');
  } finally {
    client.close();
    await server.stop();
  }
});
