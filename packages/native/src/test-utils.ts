import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));

/** Finds a C compiler, or undefined. */
export function cc(): string | undefined {
  for (const c of [process.env.CC, 'cc', 'gcc', 'clang']) {
    if (c && spawnSync(c, ['--version']).status === 0) return c;
  }
  return undefined;
}

/**
 * Builds the test-only STAND-IN for libhf3fs_api_shared.so (test-fixtures/hf3fs-standin.c):
 * a POSIX-backed imitation of the 3FS USRBIO client, never the real thing.
 */
export function buildHf3fsStandIn(): { path?: string; reason?: string } {
  const compiler = cc();
  if (!compiler) return { reason: 'no C compiler to build the 3FS stand-in' };
  const out = join(mkdtempSync(join(tmpdir(), 'tierkit-hf3fs-standin-')), 'libhf3fs_api_STANDIN.so');
  const r = spawnSync(
    compiler,
    ['-shared', '-fPIC', '-O1', '-o', out, join(packageDir, 'test-fixtures', 'hf3fs-standin.c'), '-lrt'],
    { encoding: 'utf8' },
  );
  if (r.status !== 0 || !existsSync(out)) return { reason: `stand-in build failed: ${r.stderr}` };
  // Its iovs are POSIX shared memory, as 3FS's are.
  if (!existsSync('/dev/shm')) return { reason: 'no /dev/shm for the stand-in iovs' };
  return { path: out };
}

/** Makes `dir` look like a 3FS mount to the stand-in: <dir>/3fs-virt/iovs. */
export function makeStandInMount(dir: string): string {
  mkdirSync(join(dir, '3fs-virt', 'iovs'), { recursive: true });
  return dir;
}
