/**
 * Eviction: removing one entry of the budget — an object, or a partial copy —
 * and re-walking the root so the index (the policy the victims come from)
 * matches the disk. Capacity sections call these (capacity.ts).
 */
import { promises as fsp, type Stats } from 'node:fs';
import { discardDir, partialEntryName, partialOfEntry, readInfo, scanPartials } from './partial-dir.js';
import type { TierParts } from './tier-parts.js';
import { walkFiles } from './walk.js';

/** Removes one entry's data (unless another process pinned it); returns its size, or undefined when kept. */
export async function evictOne(t: TierParts, key: string): Promise<number | undefined> {
  const partial = partialOfEntry(key);
  if (partial) return evictPartial(t, key, partial.name, partial.id);
  if (await exists(t.pinPath(key))) {
    t.pins.add(key);
    t.policy.pin(key);
    return undefined;
  }
  let size = 0;
  if (await t.paths.parentsAreReal(key)) size = await unlinkObject(t.paths.file(key));
  await fsp.unlink(t.sidecarPath(key)).catch(() => {});
  t.forget(key);
  t.budget.bytes -= size;
  t.evicted.count++;
  t.evicted.bytes += size;
  try {
    t.onEvict?.(key, size);
  } catch {
    // A throwing callback must not break the write that triggered the eviction.
  }
  return size;
}

/**
 * Evicts a partial copy (an entry of the budget like any other): gone for
 * every process; one still filling it stops at its next block and serves
 * its readers from the origin. A partial of a pinned key stays.
 */
async function evictPartial(
  t: TierParts,
  entry: string,
  name: string,
  id: string,
): Promise<number | undefined> {
  const dir = t.paths.meta('partial', name);
  const info = await readInfo(dir);
  if (info && info.id === id && (t.pins.has(info.key) || (await exists(t.pinPath(info.key))))) {
    t.policy.pin(entry);
    return undefined;
  }
  const removed = await discardDir(t.paths.meta('partial'), t.verifiedBlocks, dir, id);
  t.policy.remove(entry);
  const size = removed ?? 0;
  t.budget.bytes -= size;
  t.evicted.count++;
  t.evicted.bytes += size;
  return size;
}

/** Walks the root (partial copies included) and makes the index match the disk; returns the bytes found. */
export async function reindex(t: TierParts): Promise<number> {
  const files = await walkFiles(t.paths.real, '');
  let total = 0;
  const seen = new Set<string>();
  const fresh: { key: string; size: number; mtime: number }[] = [];
  for (const f of files) {
    const size = Number(f.st.size);
    total += size;
    seen.add(f.key);
    const known = t.policy.get(f.key);
    if (!known) fresh.push({ key: f.key, size, mtime: Number(f.st.mtimeMs) });
    else if (known.size !== size) t.policy.insert(f.key, size, known.lastUsed);
  }
  fresh.sort((a, b) => a.mtime - b.mtime);
  for (const f of fresh) {
    t.policy.insert(f.key, f.size, f.mtime);
    if (t.pins.has(f.key)) t.policy.pin(f.key);
  }
  for (const p of await scanPartials(t.paths.meta('partial'))) {
    const entry = partialEntryName(p.name, p.info.id);
    total += p.bytes;
    seen.add(entry);
    const known = t.policy.get(entry);
    // This process's own reservations not yet marked stay counted in its index.
    if (!known) t.policy.insert(entry, p.bytes, p.mtimeMs);
    else if (known.size < p.bytes) t.policy.insert(entry, p.bytes, known.lastUsed);
  }
  for (const e of [...t.policy.entries()]) {
    if (!seen.has(e.key) && !e.inUse) t.forget(e.key);
  }
  return total;
}

/** Size of the regular file at `path` (0 when missing or not a file). */
export async function regularFileSize(path: string): Promise<number> {
  try {
    const st = await fsp.lstat(path);
    return st.isFile() ? st.size : 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

/** Unlinks the object (or a link planted in its place, never its target); returns the bytes freed. */
export async function unlinkObject(path: string): Promise<number> {
  let st: Stats;
  try {
    st = await fsp.lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 0;
    throw err;
  }
  if (st.isDirectory()) return 0;
  try {
    await fsp.unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  return st.isFile() ? st.size : 0;
}

async function exists(path: string): Promise<boolean> {
  try {
    await fsp.access(path);
    return true;
  } catch {
    return false;
  }
}
