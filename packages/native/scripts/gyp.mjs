// How this package runs node-gyp, shared by the install fallback and the prebuild script.
// node-gyp is not a dependency: npm hands every lifecycle script its own copy
// (npm_config_node_gyp), and a plain `node scripts/…` run finds npm's bundled one.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';

/** The node-gyp entry script, or undefined where neither npm nor node_modules has one. */
export function findNodeGyp() {
  const env = process.env.npm_config_node_gyp;
  if (env && existsSync(env)) return env;
  try {
    return createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js');
  } catch {}
  // npm's own copy, next to the npm that ships with this Node.
  const prefix = dirname(dirname(process.execPath));
  for (const npmDir of [join(prefix, 'lib', 'node_modules', 'npm'), join(prefix, 'node_modules', 'npm')]) {
    const p = join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(p)) return p;
  }
  return undefined;
}

/**
 * `--nodedir` for the running Node when it carries its headers (Debian's nodejs, the
 * official tarballs): without it node-gyp downloads them, and CI has no network for that.
 */
export function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = dirname(dirname(process.execPath));
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

/** Whether `command` is an executable on PATH (or an absolute path that exists). */
export function onPath(command) {
  if (command.includes('/')) return existsSync(command);
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, command)));
}

/** Runs node-gyp in `cwd`; resolves to { status, output }. */
export function runNodeGyp(gyp, args, { cwd, env = process.env }) {
  const r = spawnSync(process.execPath, [gyp, ...args], {
    cwd,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { status: r.status ?? r.signal, output: `${r.stdout ?? ''}\n${r.stderr ?? ''}` };
}
