/**
 * What a tier finds when it opens its root: the root itself (real path,
 * readable), temp files and partial copies that dead processes or finished
 * fills left, and the partial copies that become entries of the index.
 */
import { promises as fsp } from 'node:fs';
import { sep } from 'node:path';
import { type SourceMeta, TierError } from '@tierkit/tier-core';
import { invalid, type Resolved } from './options.js';
import { isOurTag } from './owner.js';
import { discardDir, partialEntryName, scanPartials } from './partial-dir.js';
import { isPidAlive } from './paths.js';
import { sidecarMatch } from './sidecar.js';
import type { TierParts } from './tier-parts.js';

/** The root's real path; a missing, unreadable or non-directory root is refused with its real cause. */
export async function realRoot(o: Resolved, tier: string): Promise<string> {
  let real: string;
  try {
    real = await fsp.realpath(o.root);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    throw new TierError(
      'UNAVAILABLE',
      `tier root ${o.root} does not exist` +
        (o.readOnly ? ' (a read-only tier never creates it: is the share mounted?)' : ' (create: false)'),
      { cause: err, tier, retryable: false, details: { errno: code, path: o.root } },
    );
  }
  if (!(await fsp.stat(real)).isDirectory()) throw invalid(`tier root ${o.root} is not a directory`);
  // Listing the root proves the process may read it: a root it cannot read fails here, not on the first read.
  const dir = await fsp.opendir(real);
  await dir.close();
  return real;
}

/** Removes temp files left by processes that died mid-write (and old ones from other hosts). */
export async function cleanTemps(t: TierParts): Promise<void> {
  const dir = t.paths.meta('tmp');
  const now = Date.now();
  for (const name of await fsp.readdir(dir)) {
    const m = /^[a-z]-(\d+)-[0-9a-f]+-\d+.*@(.+)$/.exec(name);
    const path = `${dir}${sep}${name}`;
    let remove = false;
    // A pid is asked of the kernel only for our own kernel and PID namespace (see owner.ts).
    if (m && isOurTag(m[2]!) && Number(m[1]) !== process.pid) remove = !isPidAlive(Number(m[1]));
    if (!remove) {
      const st = await fsp.lstat(path).catch(() => undefined);
      remove = st !== undefined && now - st.mtimeMs > t.o.staleTempMs;
    }
    if (remove) await fsp.rm(path, { force: true, recursive: true }).catch(() => {});
  }
}

/**
 * The partial copies become entries of the index (their last use is their
 * last block), and those nothing will use are reclaimed: ones whose object is
 * already published from the same source (a publisher died before retiring
 * them) and empty ones past `staleTempMs`. The rest stay, so an interrupted
 * fill resumes; the budget evicts them in LRU order like any entry.
 * Returns the bytes of the partials kept.
 */
export async function indexPartials(t: TierParts): Promise<number> {
  let total = 0;
  const now = Date.now();
  for (const p of await scanPartials(t.paths.meta('partial'))) {
    const dir = t.paths.meta('partial', p.name);
    const published = await publishedCopy(t, p.info.key, p.info.source);
    if (published || (p.bytes === 0 && now - p.mtimeMs > t.o.staleTempMs)) {
      await discardDir(t.paths.meta('partial'), t.verifiedBlocks, dir, p.info.id).catch(() => {});
      continue;
    }
    total += p.bytes;
    const entry = partialEntryName(p.name, p.info.id);
    t.policy.insert(entry, p.bytes, p.mtimeMs);
    if (t.pins.has(p.info.key)) t.policy.pin(entry);
  }
  return total;
}

/** Whether `key` is published as a copy of `source` (a sidecar naming the file there). */
async function publishedCopy(t: TierParts, key: string, source: SourceMeta): Promise<boolean> {
  try {
    if (!(await t.paths.parentsAreReal(key))) return false;
    const st = await fsp.lstat(t.paths.file(key), { bigint: true });
    if (!st.isFile() || Number(st.size) !== source.size) return false;
    const side = await t.readSidecar(key);
    const src = sidecarMatch(side, st) === 'same' ? side?.source : undefined;
    return src !== undefined && src.size === source.size && src.etag === source.etag;
  } catch {
    return false;
  }
}

/**
 * mkdir -p that tells why it failed: a recursive mkdir reports ENOENT for any
 * failure (EROFS on a read-only mount among them), so a plain mkdir of the last
 * level is tried for the real errno.
 */
export async function mkdirTelling(path: string, mode: number): Promise<void> {
  try {
    await fsp.mkdir(path, { recursive: true, mode });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    try {
      await fsp.mkdir(path, { mode });
    } catch (real) {
      if ((real as NodeJS.ErrnoException).code === 'EEXIST') return;
      throw real;
    }
  }
}
