import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Builds the test-only STAND-IN for libhf3fs_api_shared.so shipped in @tierkit/native's test fixtures. */
export function buildStandIn(): { path?: string; reason?: string } {
  const nativeDir = dirname(createRequire(import.meta.url).resolve('@tierkit/native/package.json'));
  const src = join(nativeDir, 'test-fixtures', 'hf3fs-standin.c');
  if (!existsSync(src)) return { reason: 'stand-in source not found' };
  if (!existsSync('/dev/shm')) return { reason: 'no /dev/shm for the stand-in iovs' };
  const out = join(mkdtempSync(join(tmpdir(), 'tierkit-3fs-standin-')), 'libhf3fs_api_STANDIN.so');
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang']) {
    if (!cc) continue;
    const r = spawnSync(cc, ['-shared', '-fPIC', '-O1', '-o', out, src, '-lrt']);
    if (r.status === 0 && existsSync(out)) return { path: out };
  }
  return { reason: 'no C compiler to build the 3FS stand-in' };
}

/** A directory the stand-in takes for a 3FS mount (it needs <mount>/3fs-virt/iovs). */
export function standInMount(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  mkdirSync(join(dir, '3fs-virt', 'iovs'), { recursive: true });
  return dir;
}
