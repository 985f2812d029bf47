import { type BigIntStats, type Dirent, lstatSync, readdirSync, type Stats } from 'node:fs';
import { sep } from 'node:path';
import { MAX_KEY_BYTES, MAX_SEGMENT_BYTES, throwIfAborted } from '@tierkit/tier-core';
import { isReservedKey } from './paths.js';

export interface WalkedFile<S = Stats> {
  readonly key: string;
  readonly st: S;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the same set tier-core's keys refuse
const BAD_NAME = /[\u0000-\u001f\u007f-\u009f\\]/;

/**
 * The key rules of tier-core applied to one directory entry (readdir never
 * returns '', '.', '..' or a '/'), cheaply: this runs for every file at open.
 */
function nameBytes(name: string): number {
  if (BAD_NAME.test(name) || !name.isWellFormed()) return -1;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ASCII test
  const bytes = /^[\u0000-\u007f]*$/.test(name) ? name.length : Buffer.byteLength(name);
  return bytes > MAX_SEGMENT_BYTES ? -1 : bytes;
}

/** Filesystem calls between yields to the event loop. */
const SLICE = 512;

/**
 * Every regular file under `real/startRel` (a '/'-separated folder, '' for the
 * root) as a key. Links are never followed, `.tierkit/` is skipped, and names
 * that are not valid keys (written by other programs) are left out.
 *
 * Synchronous calls in short slices: a promise per lstat costs ~10x more than
 * the syscall, which made the index of 100,000 files take seconds.
 */
export async function walkFiles(real: string, startRel: string, signal?: AbortSignal): Promise<WalkedFile[]>;
export async function walkFiles(
  real: string,
  startRel: string,
  signal: AbortSignal | undefined,
  bigint: true,
): Promise<WalkedFile<BigIntStats>[]>;
export async function walkFiles(
  real: string,
  startRel: string,
  signal?: AbortSignal,
  bigint = false,
): Promise<WalkedFile<Stats | BigIntStats>[]> {
  const out: WalkedFile<Stats | BigIntStats>[] = [];
  const dirs: [string, number][] = [[startRel, Buffer.byteLength(startRel)]];
  let budget = SLICE;
  const tick = async () => {
    if (--budget > 0) return;
    budget = SLICE;
    await new Promise((r) => setImmediate(r));
    throwIfAborted(signal);
  };
  while (dirs.length > 0) {
    throwIfAborted(signal);
    const [rel, relBytes] = dirs.pop()!;
    const abs = rel === '' ? real : real + sep + rel.split('/').join(sep);
    let entries: Dirent[];
    try {
      entries = readdirSync(abs, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw err;
    }
    await tick();
    for (const d of entries) {
      const own = nameBytes(d.name);
      if (own < 0) continue;
      const keyBytes = rel === '' ? own : relBytes + 1 + own;
      if (keyBytes > MAX_KEY_BYTES) continue;
      const key = rel === '' ? d.name : `${rel}/${d.name}`;
      if (rel === '' && isReservedKey(key)) continue;
      if (d.isDirectory()) dirs.push([key, keyBytes]);
      else if (d.isFile()) {
        // Links, sockets, devices: never objects. Number stats unless asked: BigInts cost GC time.
        const st = bigint
          ? lstatSync(abs + sep + d.name, { bigint: true, throwIfNoEntry: false })
          : lstatSync(abs + sep + d.name, { throwIfNoEntry: false });
        if (st?.isFile()) out.push({ key, st });
        await tick();
      }
    }
  }
  return out;
}
