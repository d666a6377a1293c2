'use strict';
// The examples in examples/node run against a real sessiond and do what the
// README says; the README's snippets are exactly those files.
//
// Seed 002: the same user sends three messages rapidly (100 ms apart) and the
// bot handles them concurrently. "drop" answers the first and tells the
// others "busy" (instead of dropping them silently); "inorder" answers all
// three in arrival order through the lock's FIFO wait.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startServer, uniqueId, REPO } = require('./helpers/server');
const sd = require('..');

const EXAMPLES = path.join(REPO, 'examples', 'node');
const README = path.join(REPO, 'clients', 'node', 'README.md');
const MESSAGES = ['What is diabetes?', 'Actually, tell me about cancer', 'Never mind, explain heart disease'];

let server;
let client;
let nodePath;
let linkDir = null;
before(async () => {
  // The examples require('@sessiond/client'). run-tests.sh installs the
  // package into a scratch project and passes its node_modules; otherwise a
  // link to this checkout stands in for an installed copy.
  if (process.env.SESSIOND_CLIENT_NODE_MODULES) {
    nodePath = process.env.SESSIOND_CLIENT_NODE_MODULES;
  } else {
    linkDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sessiond-client-link-'));
    fs.mkdirSync(path.join(linkDir, '@sessiond'));
    fs.symlinkSync(path.resolve(__dirname, '..'), path.join(linkDir, '@sessiond', 'client'), 'dir');
    nodePath = linkDir;
  }
  server = await startServer();
  client = new sd.Client(server.target);
});
after(async () => {
  if (client) client.close();
  if (server) await server.stop();
  if (linkDir) fs.rmSync(linkDir, { recursive: true, force: true });
});

function runExample(file, args) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [path.join(EXAMPLES, file), ...args], {
      env: { ...process.env, NODE_PATH: nodePath },
      timeout: 60_000,
    }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** README blocks: [{ kind: 'file'|'output', key, body }] from `<!-- kind: key -->` markers before fences. */
function readmeBlocks() {
  const text = fs.readFileSync(README, 'utf8');
  const start = text.indexOf('\n## Use from Node');
  assert.ok(start >= 0, 'README has a "Use from Node" section');
  const end = text.indexOf('\n## ', start + 1);
  const section = text.slice(start, end < 0 ? undefined : end);
  const re = /<!-- (file|output): ([^>]+?) -->\n```[a-z]*\n([\s\S]*?)```/g;
  const blocks = [];
  for (let m; (m = re.exec(section)); ) blocks.push({ kind: m[1], key: m[2], body: m[3] });
  const fences = (section.match(/^```[a-z]+$/gm) || []).length;
  assert.equal(blocks.length, fences, 'every code block of the section is marked with the file or output it shows');
  return blocks;
}

test('the README snippets are exactly the example files', () => {
  const blocks = readmeBlocks().filter((b) => b.kind === 'file');
  const shown = blocks.map((b) => b.key).sort();
  assert.deepEqual(shown, ['examples/node/echo-bot.js', 'examples/node/quickstart.js']);
  for (const b of blocks) {
    assert.equal(b.body, fs.readFileSync(path.join(REPO, b.key), 'utf8'), `${b.key} as shown in the README`);
  }
});

test('quickstart runs', async () => {
  const out = await runExample('quickstart.js', [server.target]);
  assert.equal(out, 'turns=1 version=2 fields=lastSeen,turns\ndeleted\n');
  assert.equal(readmeBlocks().find((b) => b.key === 'node quickstart.js').body, out);
});

async function history(userId) {
  const s = await client.get(userId, { consistency: 'strong' });
  return JSON.parse(s.fields.history.toString());
}

test('seed 002, drop mode: the 1st message is handled, the 2nd and 3rd are answered busy', async () => {
  const user = uniqueId('drop');
  const out = await runExample('echo-bot.js', ['drop', server.target, user]);
  const lines = out.trimEnd().split('\n');
  assert.equal(lines.length, 3);
  assert.equal(lines[0], `${MESSAGES[0]} -> echo #1: ${MESSAGES[0]}`);
  assert.equal(lines[1], `${MESSAGES[1]} -> busy: still answering you, please send "${MESSAGES[1]}" again`);
  assert.equal(lines[2], `${MESSAGES[2]} -> busy: still answering you, please send "${MESSAGES[2]}" again`);
  assert.deepEqual(await history(user), [MESSAGES[0]], 'only the first was handled');
  assert.equal(readmeBlocks().find((b) => b.key === 'node echo-bot.js drop').body, out);
});

test('seed 002, inorder mode: all three are handled, in arrival order', async () => {
  const user = uniqueId('inorder');
  const started = Date.now();
  const out = await runExample('echo-bot.js', ['inorder', server.target, user]);
  const lines = out.trimEnd().split('\n');
  assert.deepEqual(lines, MESSAGES.map((m, i) => `${m} -> echo #${i + 1}: ${m}`));
  assert.deepEqual(await history(user), MESSAGES, 'the session saw them in the order they were sent');
  assert.ok(Date.now() - started >= 900, 'handled one after the other (3 x 300 ms), not at once');
  assert.equal(readmeBlocks().find((b) => b.key === 'node echo-bot.js inorder').body, out);
});

for (const mode of ['latest', 'debounce', 'dedupe']) {
  test(`the echo bot's ${mode} mode answers as its README shows`, async () => {
    const user = uniqueId(mode);
    const out = await runExample('echo-bot.js', [mode, server.target, user]);
    assert.equal(readmeBlocks().find((b) => b.key === `node echo-bot.js ${mode}`).body, out);
    if (mode === 'dedupe') assert.deepEqual(await history(user), MESSAGES, 'each event handled once');
  });
}

test('seed 002 for two users at once: each user is locked alone, neither waits for the other', async () => {
  // Two bot processes, one user each, one in each mode: the "inorder" user's
  // queue and the "drop" user's busy answers do not leak into each other.
  const a = uniqueId('user-a');
  const b = uniqueId('user-b');
  const [outA, outB] = await Promise.all([
    runExample('echo-bot.js', ['inorder', server.target, a]),
    runExample('echo-bot.js', ['drop', server.target, b]),
  ]);
  assert.deepEqual(await history(a), MESSAGES);
  assert.deepEqual(await history(b), [MESSAGES[0]]);
  assert.equal(outA.split('\n').filter((l) => l.includes('busy')).length, 0);
  assert.equal(outB.split('\n').filter((l) => l.includes('busy')).length, 2);
});
