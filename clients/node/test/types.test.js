'use strict';
// index.d.ts (hand-written) type-checks a typed usage of the whole API.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');

test('tsc --noEmit accepts test/types/usage.ts against index.d.ts', async () => {
  const tsc = require.resolve('typescript/bin/tsc');
  const project = path.join(__dirname, 'types', 'tsconfig.json');
  const { code, out } = await new Promise((resolve) => {
    execFile(process.execPath, [tsc, '--noEmit', '-p', project], { timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, out: stdout + stderr }),
    );
  });
  assert.equal(code, 0, `tsc reported:\n${out}`);
});

test('every runtime export is declared, and every declared value exists', () => {
  const fs = require('node:fs');
  const dts = fs.readFileSync(path.join(__dirname, '..', 'index.d.ts'), 'utf8');
  const declared = [...dts.matchAll(/^export declare (?:class|const|function) (\w+)/gm)].map((m) => m[1]).sort();
  const runtime = Object.keys(require('..')).sort();
  assert.deepEqual(declared, runtime);
});
