/**
 * Refusing a cache directory on a virtual filesystem before tier-fs opens it.
 * Node's recursive mkdir retries forever where a directory cannot be made
 * although its parent exists (under /proc or /sys every mkdir says ENOENT),
 * spinning a core and ignoring SIGTERM. The filesystem of the nearest
 * existing ancestor tells beforehand, without creating anything.
 */
import { statfsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { TierError } from '@tierkit/tier-core';

/** statfs f_type of the kernel's virtual filesystems, where no cache directory can live. */
const VIRTUAL_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x73636673, 'securityfs'],
  [0x62656570, 'configfs'],
  [0xcafe4a11, 'bpf'],
  [0x6165676c, 'pstore'],
  [0xde5e81e4, 'efivarfs'],
  [0x1cd1, 'devpts'],
  [0x42494e4d, 'binfmt_misc'],
]);

function cannot(path: string, why: string): TierError {
  return new TierError('UNAVAILABLE', `cannot use ${path} as the cache directory: ${why}`, {
    retryable: false,
    details: { path },
  });
}

/** Throws a clear error when `root` is, or would be made, on a virtual filesystem or under a file. */
export function checkCacheRoot(root: string): void {
  const abs = resolve(root);
  let at = abs;
  for (;;) {
    const s = statSync(at, { throwIfNoEntry: false });
    if (s) {
      if (!s.isDirectory()) throw cannot(abs, `${at} is not a directory`);
      break;
    }
    const up = dirname(at);
    if (up === at) return;
    at = up;
  }
  let type: number;
  try {
    type = Number(statfsSync(at).type);
  } catch {
    return; // tier-fs reports what it cannot do there
  }
  const fs = VIRTUAL_FS.get(type);
  if (fs !== undefined) {
    throw cannot(
      abs,
      `${at} is on ${fs}, a virtual filesystem where no cache can be made: choose a directory on a disk`,
    );
  }
}
