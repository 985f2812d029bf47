/**
 * Finds and loads the addon binary. Loading never throws: where no binary loads, the
 * result says why, and the first such load prints one line per process saying what
 * falls back to what.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type AddonSource = 'env' | 'build' | 'prebuild';

export interface AddonLoad {
  readonly addon?: unknown;
  readonly path?: string;
  /** Where it came from: TIERKIT_NATIVE_ADDON, a local compile (build/), or the tarball's prebuilds/. */
  readonly source?: AddonSource;
  /** Why no binary loaded (set only when `addon` is undefined). */
  readonly reason?: string;
}

/** The folder the tarball's prebuilt binaries live in for this machine, e.g. prebuilds/linux-x64. */
export function prebuildDir(root: string, platform = process.platform, arch = process.arch): string {
  return join(root, 'prebuilds', `${platform}-${arch}`);
}

/** The file name of a prebuilt binary: built against glibc (musl systems compile at install). */
export const PREBUILD_FILE = 'tierkit_native.glibc.node';

/**
 * The one line that says the addon is unavailable, why, and what each feature falls back
 * to. The install script prints the same line when it could neither use a prebuilt
 * binary nor compile one.
 */
export function unavailableNotice(reason: string): string {
  const why = reason.replace(/\s+/g, ' ').trim().slice(0, 300);
  return (
    `@tierkit/native: native addon unavailable (${why}); falling back: tier-fs serves cached ` +
    "reads through libuv's thread pool instead of inline page-cache reads, parallel " +
    'pread/pwrite go through node:fs, no O_DIRECT, tier-gds uses POSIX I/O instead of ' +
    'GPU-Direct Storage, tier-3fs uses its FUSE mount instead of USRBIO ' +
    '(to build it: a C++ compiler, make and python3, then `npm explore @tierkit/native -- npm run build:native`)'
  );
}

function packageRoot(): string {
  // src/load.ts and dist/index.{js,cjs} both sit one level below the package root.
  return dirname(dirname(fileURLToPath(import.meta.url)));
}

function candidates(root: string): [string, AddonSource][] {
  const env = process.env.TIERKIT_NATIVE_ADDON;
  // TIERKIT_NATIVE_ADDON names the one file to load (a GPU bundle carries its own).
  if (env) return [[env, 'env']];
  // A local compile (the install script, build:native) wins over the tarball's binary, as the
  // user asked for it; the prebuilt binary serves everyone else with no compiler.
  return [
    [join(root, 'build', 'Release', 'tierkit_native.node'), 'build'],
    [join(root, 'build', 'Debug', 'tierkit_native.node'), 'build'],
    [join(prebuildDir(root), PREBUILD_FILE), 'prebuild'],
  ];
}

function notLoadedReason(root: string, errors: string[]): string {
  const env = process.env.TIERKIT_NATIVE_ADDON;
  if (env && errors.length === 0) return `TIERKIT_NATIVE_ADDON=${env} does not exist`;
  if (errors.length > 0) return `the addon failed to load: ${errors.join('; ')}`;
  const failed = join(root, 'build', 'failed.json');
  if (existsSync(failed)) {
    try {
      return `the addon was not built: ${JSON.parse(readFileSync(failed, 'utf8')).reason}`;
    } catch {}
  }
  return (
    `no prebuilt addon for ${process.platform}-${process.arch} and none was built ` +
    '(run `npm run build:native -w @tierkit/native`)'
  );
}

let loaded: AddonLoad | undefined;

/** Loads the addon once per process; later calls return the same result. */
export function loadBinary(): AddonLoad {
  if (loaded) return loaded;
  const root = packageRoot();
  const require = createRequire(import.meta.url);
  const errors: string[] = [];
  for (const [path, source] of candidates(root)) {
    if (!existsSync(path)) continue;
    try {
      loaded = { addon: require(path), path, source };
      return loaded;
    } catch (err) {
      errors.push(`${path}: ${(err as Error).message}`);
    }
  }
  const reason = notLoadedReason(root, errors);
  loaded = { reason };
  // One line on stderr, once per process; TIERKIT_NATIVE_QUIET=1 for deployments that chose this.
  if (process.env.TIERKIT_NATIVE_QUIET !== '1') console.warn(unavailableNotice(reason));
  return loaded;
}
