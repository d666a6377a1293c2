#!/usr/bin/env node
// Copies the repository's proto/ into this package's proto/, which is
// committed so that `npm install <path or tarball>` works without the rest of
// the repository. test/package.test.js fails when the two differ.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const from = path.resolve(__dirname, '..', '..', '..', 'proto');
const to = path.resolve(__dirname, '..', 'proto');
fs.rmSync(to, { recursive: true, force: true });
fs.cpSync(from, to, { recursive: true, filter: (src) => fs.statSync(src).isDirectory() || src.endsWith('.proto') });
console.log(`copied ${from} -> ${to}`);
