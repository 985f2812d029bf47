/**
 * The directories of partial copies (see partial.ts): their info.json, the
 * private names a process makes things under before it renames them into
 * place, the bytes a partial holds (what the budget counts), retiring a
 * partial, and removing what dead processes left.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import type { SourceMeta } from '@tierkit/tier-core';
import { isOurTag, OWNER_TAG } from './owner.js';
import { isPidAlive } from './paths.js';

export interface Info {
  /** Random, unique to this partial: part of its files' names. */
  readonly id: string;
  readonly key: string;
  readonly source: SourceMeta;
  readonly blockSize: number;
}

let seq = 0;

/** Bytes per block in `blocks.<id>`: a CRC-32, then MARKER once the block is on the disk. */
export const SLOT = 8;
export const MARKER = 0x424c4b31; // 'BLK1'

const ENTRY_PREFIX = '.tierkit/partial/';
/**
 * The name a partial copy has in the tier's eviction policy: its directory
 * under the root and its id. It can never be a key (`.tierkit` is reserved),
 * so a partial of `key` and the complete `key` are two entries, and a partial
 * replaced at the same directory is another entry.
 */
export function partialEntryName(dirName: string, id: string): string {
  return `${ENTRY_PREFIX}${dirName}/${id}`;
}
/** The directory name and id of a policy entry that is a partial copy; undefined for an object's key. */
export function partialOfEntry(entry: string): { name: string; id: string } | undefined {
  if (!entry.startsWith(ENTRY_PREFIX)) return undefined;
  const [name, id] = entry.slice(ENTRY_PREFIX.length).split('/');
  return name && id ? { name, id } : undefined;
}

/** What the budget counts of one partial: the bytes of its blocks marked present. */
export interface PartialSummary {
  /** Directory name under `.tierkit/partial` (the key's hash). */
  readonly name: string;
  readonly info: Info;
  readonly bytes: number;
  /** Last block added (the blocks file's mtime). */
  readonly mtimeMs: number;
}

/** The bytes of the blocks marked present in the partial at `dir` (of `info`), and when one was last added. */
export async function markedBytes(
  dir: string,
  info: Info,
): Promise<{ bytes: number; mtimeMs: number } | undefined> {
  const blocks = Math.ceil(info.source.size / info.blockSize);
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(join(dir, `blocks.${info.id}`), 'r');
    const slots = Buffer.alloc(blocks * SLOT);
    await fh.read(slots, 0, slots.byteLength, 0);
    const { mtimeMs } = await fh.stat();
    let bytes = 0;
    for (let b = 0; b < blocks; b++) {
      if (slots.readUInt32LE(b * SLOT + 4) === MARKER) {
        bytes += Math.min(info.blockSize, info.source.size - b * info.blockSize);
      }
    }
    return { bytes, mtimeMs };
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => {});
  }
}

/** Every readable partial under `partials` (private names, mid-rename, are skipped). */
export async function scanPartials(partials: string): Promise<PartialSummary[]> {
  const out: PartialSummary[] = [];
  for (const name of await fsp.readdir(partials).catch(() => [] as string[])) {
    if (name.startsWith('.')) continue;
    const dir = join(partials, name);
    const info = await readInfo(dir);
    const marked = info && (await markedBytes(dir, info));
    if (info && marked) out.push({ name, info, ...marked });
  }
  return out;
}

/**
 * A name only this process uses: `.<kind>-<pid>-<n>-<random>@<owner tag>`. The
 * owner tag (owner.ts), not the hostname, says whose pid it is, so leftovers are
 * judged by pid only within one kernel and PID namespace.
 */
export function privateName(kind: 'new' | 'old' | 'pub', dir?: string): string {
  const name = `.${kind}-${process.pid}-${++seq}-${randomBytes(3).toString('hex')}@${OWNER_TAG}`;
  return dir === undefined ? name : join(dir, name);
}

export async function readInfo(dir: string): Promise<Info | undefined> {
  try {
    const info = JSON.parse(await fsp.readFile(join(dir, 'info.json'), 'utf8')) as Info;
    if (
      typeof info.id !== 'string' ||
      !/^[0-9a-f]{16}$/.test(info.id) ||
      typeof info.key !== 'string' ||
      typeof info.source?.size !== 'number' ||
      !(info.blockSize > 0)
    ) {
      return undefined;
    }
    return info;
  } catch {
    return undefined;
  }
}

export async function exists(path: string): Promise<boolean> {
  return fsp.lstat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Renames the partial with id `id` (undefined: one without a readable info.json)
 * aside, atomically for everyone else, then removes it. What is at `dir` may
 * have been replaced since it was judged: a newer partial is put back (unless a
 * third took the path in that instant). Resolves to the bytes of the blocks it
 * removed (what the budget counted for them), or undefined when it removed
 * nothing: exactly one caller removes a partial, so exactly one uncounts it.
 */
export async function discardDir(
  partials: string,
  verified: Map<string, { readonly id: string }>,
  dir: string,
  id: string | undefined,
): Promise<number | undefined> {
  const aside = privateName('old', partials);
  try {
    await fsp.rename(dir, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const info = await readInfo(aside);
  if (info?.id !== id) {
    // Put back. If yet another partial took the path meanwhile (a three-way race), this
    // one is lost to its users: they keep their open files, fetch what they lack, and
    // cannot publish it (nothing wrong is served); it is removed below.
    const back = await fsp.rename(aside, dir).then(
      () => true,
      () => false,
    );
    if (back) return undefined;
  }
  if (verified.get(dir)?.id === id) verified.delete(dir);
  const bytes = info ? ((await markedBytes(aside, info))?.bytes ?? 0) : 0;
  await fsp.rm(aside, { recursive: true, force: true });
  return bytes;
}

/**
 * Removes what dead processes left in `.tierkit/partial` (half-made or
 * half-removed partials, unpublished links; other hosts' after `leftoverAgeMs`),
 * and partials nobody has touched for `partialAgeMs`. Live partials stay.
 */
export async function cleanPartialLeftovers(
  dir: string,
  leftoverAgeMs: number,
  partialAgeMs: number,
): Promise<void> {
  const now = Date.now();
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    const path = join(dir, name);
    const m = /^\.(new|old|pub)-(\d+)-\d+-[0-9a-f]+@(.+)$/.exec(name);
    let remove = false;
    if (m) {
      // A live process's `.old-` may be a newer partial it is about to put back.
      remove = isOurTag(m[3]!) && !isPidAlive(Number(m[2]));
      if (!remove) {
        const st = await fsp.lstat(path).catch(() => undefined);
        remove = st !== undefined && now - st.mtimeMs > leftoverAgeMs;
      }
    } else {
      // A partial's blocks file changes with every block written: its age is the partial's idle time.
      const id = (await readInfo(path))?.id;
      const st = await (id ? fsp.stat(join(path, `blocks.${id}`)) : Promise.reject()).catch(() =>
        fsp.lstat(path).catch(() => undefined),
      );
      remove = st !== undefined && now - st.mtimeMs > partialAgeMs;
    }
    if (remove) await fsp.rm(path, { recursive: true, force: true }).catch(() => {});
  }
}
