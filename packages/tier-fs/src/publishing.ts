/**
 * Publishing: a complete file (a write's temp file, or a private link to a
 * partial copy's data) renamed into place as an object, inside the capacity
 * section when the budget is limited, and recorded in the index; and what a
 * partial copy asks of its tier (partial.ts's PartialHost): its blocks
 * reserved in the budget, its use, its retirement.
 */
import { promises as fsp } from 'node:fs';
import { basename, dirname } from 'node:path';
import { type ObjectMeta, type SourceMeta, throwIfAborted } from '@tierkit/tier-core';
import { regularFileSize } from './eviction.js';
import type { LockFiles } from './lock.js';
import type { PartialHost } from './partial.js';
import { discardDir, markedBytes, partialEntryName, readInfo } from './partial-dir.js';
import { fsyncDir } from './paths.js';
import type { BlockSums } from './sidecar.js';
import type { TierParts } from './tier-parts.js';

/** A partial copy being published: its directory and id. */
export interface PublishedPartial {
  readonly dir: string;
  readonly id: string;
}

/**
 * Renames the complete file `tmp` (`size` bytes, identity `id`) into place as
 * `key` — after making room under the budget — and records it. When it is a
 * partial copy's data, that partial is retired in the same section: its
 * blocks, counted already, become the object's (nothing is counted twice).
 */
export async function placeFile(
  t: TierParts,
  key: string,
  tmp: string,
  size: number,
  id: string,
  source: SourceMeta | undefined,
  signal: AbortSignal | undefined,
  partial?: PublishedPartial,
): Promise<void> {
  const final = t.paths.file(key);
  if (t.budget.limited) {
    await t.budget.section(async () => {
      const old = await regularFileSize(final);
      const info = partial && (await readInfo(partial.dir));
      const counted =
        partial && info?.id === partial.id ? ((await markedBytes(partial.dir, info))?.bytes ?? 0) : 0;
      await t.budget.makeRoom(key, size - counted, old, signal);
      await fsp.rename(tmp, final);
      t.budget.bytes += size - old;
      if (partial) await retirePartial(t, partial.dir, partial.id);
    });
  } else {
    throwIfAborted(signal, key);
    await fsp.rename(tmp, final);
    if (partial) await retirePartial(t, partial.dir, partial.id);
  }
  t.fds?.invalidate(key);
  if (t.o.fsync) await fsyncDir(dirname(final));
  t.sources.set(key, { id, source });
  const now = t.clock();
  t.policy.insert(key, size, now);
  if (t.pins.has(key)) t.policy.pin(key);
  t.journal?.record(key, now);
}

/**
 * Removes the partial at `dir` if it is still the one with `id` (inside the
 * capacity section when the budget is limited): the one caller that removes
 * it uncounts its blocks.
 */
export async function retirePartial(t: TierParts, dir: string, id: string | undefined): Promise<void> {
  const removed = await discardDir(t.paths.meta('partial'), t.verifiedBlocks, dir, id);
  if (removed !== undefined) t.budget.bytes -= removed;
  if (id !== undefined) t.policy.remove(partialEntryName(basename(dir), id));
}

/** What the tier lends a partial copy beyond its parts: the fill's I/O settings and its object operations. */
export interface PartialServices {
  readonly locks: LockFiles;
  readonly pool: PartialHost['pool'];
  readonly direct: boolean;
  /** The entry of `key` if it is a complete copy of `source`. */
  published(key: string, source: SourceMeta): Promise<ObjectMeta | undefined>;
  /**
   * Publishes the complete `file` as `key` (placeFile, with the sidecar, carrying `sums`,
   * first) and returns its meta.
   */
  publishFile(
    key: string,
    file: string,
    source: SourceMeta,
    partial: PublishedPartial,
    sums: BlockSums,
  ): Promise<ObjectMeta>;
  /** Counts bytes a partial read back at publish to take block sums it did not have. */
  readBack(bytes: number): void;
}

/** The host a partial copy of this tier works through (see partial.ts). */
export function partialHost(t: TierParts, s: PartialServices): PartialHost {
  const { budget, policy } = t;
  return {
    dir: t.paths.meta('partial'),
    fsync: t.o.fsync,
    fileMode: t.o.fileMode,
    locks: s.locks,
    tier: t.name,
    verified: t.verifiedBlocks,
    pool: s.pool,
    direct: s.direct,
    published: s.published,
    readBack: s.readBack,
    publish: async (key, file, source, dir, id, sums) => {
      try {
        return await s.publishFile(key, file, source, { dir, id }, sums);
      } finally {
        // Gone after a rename, except where another handle published the same partial first:
        // renaming a link onto another name of its own inode does nothing, and leaves the link.
        await fsp.unlink(file).catch(() => {});
      }
    },
    retire: async (dir, id) => {
      if (budget.limited) await budget.section(() => retirePartial(t, dir, id));
      else await retirePartial(t, dir, id);
    },
    reserve: async (key, entry, bytes) => {
      if (budget.limited) await budget.reserve(key, entry, bytes);
      policy.insert(entry, (policy.get(entry)?.size ?? 0) + bytes, t.clock());
    },
    unreserve: async (entry, bytes) => {
      const e = policy.get(entry);
      if (e) policy.insert(entry, Math.max(0, e.size - bytes), e.lastUsed);
      if (budget.limited) await budget.adjust(-bytes);
    },
    opened: (entry, bytes) => {
      const e = policy.get(entry);
      if (!e || e.size < bytes) policy.insert(entry, bytes, e?.lastUsed ?? t.clock());
      policy.acquire(entry);
    },
    closed: (entry) => policy.release(entry),
    used: (entry) => policy.touch(entry, t.clock()),
  };
}
