#!/usr/bin/env node
// Builds the addon with node-gyp at `npm install`. A failed build must not fail the
// install: the package still loads and `capabilities()` reports why the addon is
// missing (build/failed.json). `--strict` (npm run build:native) fails loudly instead.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const strict = process.argv.includes('--strict');
const require = createRequire(import.meta.url);
const failedFile = join(here, 'build', 'failed.json');

function fail(reason, output = '') {
  mkdirSync(join(here, 'build'), { recursive: true });
  writeFileSync(failedFile, JSON.stringify({ reason, output: output.slice(-4000) }, null, 2));
  console.warn(`@tierkit/native: addon not built (${reason}); the package loads without it.`);
  process.exit(strict ? 1 : 0);
}

if (process.env.TIERKIT_NATIVE_SKIP_BUILD === '1') fail('TIERKIT_NATIVE_SKIP_BUILD=1');
let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  fail('node-gyp is not installed');
}
const args = [gyp, 'rebuild', '--release', '-j', '2'];
// Headers come with the Node install (Debian's nodejs, official tarballs); without
// this node-gyp would try to download them, and CI has no network for that.
const prefix = dirname(dirname(process.execPath));
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) {
  args.push(`--nodedir=${prefix}`);
}
rmSync(failedFile, { force: true });
const r = spawnSync(process.execPath, args, {
  cwd: here,
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'pipe'],
});
if (r.status !== 0) fail(`node-gyp exited with ${r.status ?? r.signal}`, `${r.stdout}\n${r.stderr}`);
console.log('@tierkit/native: addon built');
