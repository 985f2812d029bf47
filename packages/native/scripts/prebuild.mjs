#!/usr/bin/env node
// Builds the addon for every platform the tarball carries a binary for, into
// prebuilds/<platform>-<arch>/tierkit_native.glibc.node, which the loader (src/load.ts)
// and the install script pick up so an install needs no compiler. Run by `prepack`.
//
// Each target builds in its own copy under build/prebuild/<target>/, so the
// workspace's own build/Release is left alone. A target for another CPU is cross-built
// with Debian's cross compiler (g++-aarch64-linux-gnu for linux-arm64 on x64). Every
// binary is checked before it is kept: the right ELF machine, and N-API only (no V8,
// libuv or node:: import), so one file serves Node 20, 22 and 24.
//
//   node scripts/prebuild.mjs [--targets=linux-x64,linux-arm64]   (or TIERKIT_PREBUILD_TARGETS)
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { abiProblem, inspectElf } from './elf.mjs';
import { findNodeGyp, nodedirArgs, onPath, runNodeGyp } from './gyp.mjs';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const DEFAULT_TARGETS = 'linux-x64,linux-arm64';
// The GNU triplets of Debian's cross compilers, by Node's arch names.
const TRIPLETS = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

const arg = process.argv.find((a) => a.startsWith('--targets='));
const targets = (arg?.slice('--targets='.length) ?? process.env.TIERKIT_PREBUILD_TARGETS ?? DEFAULT_TARGETS)
  .split(',')
  .map((t) => t.trim())
  .filter(Boolean);

function die(message) {
  console.error(`@tierkit/native prebuild: ${message}`);
  process.exit(1);
}

const gyp = findNodeGyp();
if (!gyp) die('node-gyp was not found (run through npm, which provides it)');
// The tarball holds exactly what this run builds: no binary left from older sources.
rmSync(join(here, 'prebuilds'), { recursive: true, force: true });

for (const target of targets) {
  const [platform, arch] = target.split('-');
  if (platform !== 'linux' || !TRIPLETS[arch]) die(`unsupported target ${target} (linux-x64, linux-arm64)`);
  if (process.platform !== 'linux') die(`linux prebuilds are built on linux, not ${process.platform}`);
  // libstdc++ stays dynamic: linked in statically it pulls in random_device and with it
  // arc4random, which raises the glibc floor from 2.34 to 2.36 (Ubuntu 22.04 has 2.35).
  const env = { ...process.env };
  if (arch !== process.arch) {
    const t = TRIPLETS[arch];
    if (!onPath(`${t}-g++`)) {
      die(`${target} needs the cross compiler ${t}-g++ (Debian: apt-get install g++-${t})`);
    }
    Object.assign(env, { CC: `${t}-gcc`, CXX: `${t}-g++`, AR: `${t}-ar`, LINK: `${t}-g++` });
  }
  const stage = join(here, 'build', 'prebuild', target);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  cpSync(join(here, 'binding.gyp'), join(stage, 'binding.gyp'));
  cpSync(join(here, 'csrc'), join(stage, 'csrc'), { recursive: true });
  const started = Date.now();
  const r = runNodeGyp(gyp, ['rebuild', '--release', '-j', '2', `--arch=${arch}`, ...nodedirArgs()], {
    cwd: stage,
    env,
  });
  if (r.status !== 0) die(`${target}: node-gyp exited with ${r.status}\n${r.output.slice(-4000)}`);
  const built = join(stage, 'build', 'Release', 'tierkit_native.node');
  const info = inspectElf(built);
  if (info.machine !== arch) die(`${target}: the build is for ${info.machine}, not ${arch}`);
  const problem = abiProblem(info);
  if (problem) die(`${target}: not a portable N-API addon: ${problem}`);
  const outDir = join(here, 'prebuilds', target);
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, 'tierkit_native.glibc.node');
  cpSync(built, out);
  if (arch === process.arch) {
    // The host's binary must also load, not only look right.
    const addon = createRequire(import.meta.url)(out);
    if (typeof addon.readCached !== 'function') die(`${target}: the built addon lacks readCached`);
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  console.log(
    `@tierkit/native prebuild: ${target} -> prebuilds/${target}/tierkit_native.glibc.node ` +
      `(N-API only; needs glibc >= ${info.glibc ?? '?'}, libstdc++ GLIBCXX_${info.glibcxx ?? '?'}; ${secs} s)`,
  );
}
