#!/usr/bin/env node
// Runs at `npm install`. Where the tarball's prebuilt binary for this machine loads, it
// does nothing more: no compiler, no node-gyp. Only where none matches (another CPU,
// musl, a glibc older than the prebuild needs) does it compile with node-gyp (npm's own
// copy). A failed compile must not fail the install: the package loads without the
// addon, this script prints the one-line notice, and `capabilities()` says why
// (build/failed.json).
//
// --strict (npm run build:native), --build-from-source on npm, or
// TIERKIT_NATIVE_BUILD_FROM_SOURCE=1 compile even where a prebuilt binary loads;
// --strict also fails loudly. TIERKIT_NATIVE_SKIP_BUILD=1 never compiles.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findNodeGyp, nodedirArgs, onPath, runNodeGyp } from './gyp.mjs';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const strict = process.argv.includes('--strict');
const fromSource =
  strict ||
  process.env.npm_config_build_from_source === 'true' ||
  process.env.TIERKIT_NATIVE_BUILD_FROM_SOURCE === '1';
const require = createRequire(import.meta.url);
const failedFile = join(here, 'build', 'failed.json');
const target = `${process.platform}-${process.arch}`;

async function notice(reason) {
  // The same line the package prints at run time (dist/ is there in a packed tarball;
  // a fresh checkout installs before it builds).
  try {
    const { unavailableNotice } = await import(pathToFileURL(join(here, 'dist', 'index.js')).href);
    return unavailableNotice(reason);
  } catch {
    return `@tierkit/native: native addon unavailable (${reason})`;
  }
}

async function fail(reason, output = '') {
  mkdirSync(join(here, 'build'), { recursive: true });
  writeFileSync(failedFile, JSON.stringify({ reason, output: output.slice(-4000) }, null, 2));
  console.warn(await notice(reason));
  process.exit(strict ? 1 : 0);
}

rmSync(failedFile, { force: true });
let prebuildError;
if (!fromSource) {
  const prebuilt = join(here, 'prebuilds', target, 'tierkit_native.glibc.node');
  if (existsSync(prebuilt)) {
    try {
      require(prebuilt);
      console.log(`@tierkit/native: using the prebuilt addon for ${target}`);
      process.exit(0);
    } catch (err) {
      prebuildError = `the prebuilt addon for ${target} does not load here: ${err.message}`;
    }
  }
}

const missing = prebuildError ?? `no prebuilt addon for ${target}`;
if (process.env.TIERKIT_NATIVE_SKIP_BUILD === '1') await fail(`${missing}; TIERKIT_NATIVE_SKIP_BUILD=1`);
const gyp = findNodeGyp();
if (!gyp) await fail(`${missing}, and node-gyp is not available to build one`);
// node-gyp's Makefiles call $CC (make's default cc), $CXX (g++) and make: say so plainly
// rather than leave the reason in a compiler log.
const tools = [process.env.CC || 'cc', process.env.CXX || 'g++', 'make'];
const absent = tools.filter((t) => !onPath(t.split(' ')[0]));
if (absent.length > 0) {
  await fail(`${missing}, and no compiler to build one (${absent.join(', ')} not on PATH)`);
}
const r = runNodeGyp(gyp, ['rebuild', '--release', '-j', '2', ...nodedirArgs()], { cwd: here });
if (r.status !== 0) await fail(`${missing}, and node-gyp exited with ${r.status}`, r.output);
console.log(`@tierkit/native: addon built for ${target}`);
