/**
 * Pins (a file per pinned key in `.tierkit/pins`, so every process sharing
 * the root sees them) and purges: down to a byte budget, or of entries idle
 * for a while — objects and partial copies alike, never pinned or in-use ones.
 */
import { promises as fsp } from 'node:fs';
import { sep } from 'node:path';
import { throwIfAborted } from '@tierkit/tier-core';
import { evictOne } from './eviction.js';
import { partialOfEntry, readInfo } from './partial-dir.js';
import { keyHash } from './paths.js';
import type { TierParts } from './tier-parts.js';

/** The pins other processes (and earlier runs) left, into `t.pins`. */
export async function loadPins(t: TierParts): Promise<void> {
  const dir = t.paths.meta('pins');
  for (const name of await fsp.readdir(dir)) {
    const key = await fsp.readFile(`${dir}${sep}${name}`, 'utf8').catch(() => undefined);
    if (key !== undefined && keyHash(key) === name) t.pins.add(key);
  }
}

export async function writePin(t: TierParts, key: string): Promise<void> {
  const tmp = t.tmpPath('p');
  try {
    await fsp.writeFile(tmp, key);
    await fsp.rename(tmp, t.pinPath(key));
  } catch (err) {
    // (A full disk can refuse the bytes after the name was made.)
    await fsp.unlink(tmp).catch(() => {});
    throw err;
  }
  t.pins.add(key);
  t.policy.pin(key);
}

export async function removePin(t: TierParts, key: string): Promise<void> {
  try {
    await fsp.unlink(t.pinPath(key));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  t.pins.delete(key);
  t.policy.unpin(key);
}

/** Evicts least recently used entries until the index holds at most `maxBytes`; returns what went. */
export function purgeToBytes(
  t: TierParts,
  maxBytes: number,
  signal: AbortSignal | undefined,
): Promise<string[]> {
  return purge(t, signal, () => {
    const need = t.policy.totalBytes - maxBytes;
    return need > 0 ? t.policy.victims(need) : [];
  });
}

/** Evicts entries not used for `idleMs`; returns what went. */
export function purgeIdle(t: TierParts, idleMs: number, signal: AbortSignal | undefined): Promise<string[]> {
  return purge(t, signal, () => t.policy.idle(idleMs, t.clock()));
}

/**
 * Evicts `victims()` (inside the capacity section when the budget is
 * limited). A partial copy is reported as `<key> (partial)`: its name in the
 * index means nothing to a reader.
 */
async function purge(
  t: TierParts,
  signal: AbortSignal | undefined,
  victims: () => string[],
): Promise<string[]> {
  const out: string[] = [];
  const run = async () => {
    for (const name of victims()) {
      throwIfAborted(signal);
      const partial = partialOfEntry(name);
      const shown = partial
        ? `${(await readInfo(t.paths.meta('partial', partial.name)))?.key ?? name} (partial)`
        : name;
      if ((await evictOne(t, name)) !== undefined) out.push(shown);
    }
  };
  if (t.budget.limited) await t.budget.section(run);
  else await run();
  return out;
}
