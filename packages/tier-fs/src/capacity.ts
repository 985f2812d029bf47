/**
 * The byte budget of one root, shared by every process that uses it: the count
 * of bytes under the root in `.tierkit/usage.json` (complete objects and the
 * blocks of partial copies, each block counted before it is written), the
 * section that guards it (a promise queue in-process, the `capacity` lock file
 * across processes), and eviction until new bytes fit under `maxBytes` and
 * `minFreeRatio`.
 */
import { promises as fsp } from 'node:fs';
import { type Policy, TierError, throwIfAborted } from '@tierkit/tier-core';
import type { FsLock, LockFiles } from './lock.js';

const CAPACITY_LOCK = 'capacity';
/**
 * The count's format: 2 counts partial copies too. A count written before
 * (objects only) is recounted from the disk by the first holder that reads it.
 */
const USAGE_VERSION = 2;
/** errnos of a filesystem out of space (or quota). */
export const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

/** What the budget needs of its tier. */
export interface BudgetHost {
  readonly name: string;
  readonly policy: Policy;
  readonly locks: LockFiles;
  /** `.tierkit/usage.json`. */
  readonly usageFile: string;
  /** The root, for statfs. */
  readonly root: string;
  tmpPath(kind: string): string;
  /** Walks the root (partial copies included), makes the index match the disk, and returns the bytes found. */
  reindex(): Promise<number>;
  /** Removes one entry, an object or a partial copy (not a pinned one); its size, or undefined when it was kept. */
  evict(key: string): Promise<number | undefined>;
}

export class Budget {
  /** Bytes under the root, as of the last section (exact inside one). */
  bytes = 0;
  readonly #host: BudgetHost;
  readonly #maxBytes: number | undefined;
  readonly #minFreeRatio: number;
  #queue: Promise<void> = Promise.resolve();
  /** The capacity lock while a section runs. */
  #held: FsLock | undefined;

  constructor(host: BudgetHost, maxBytes: number | undefined, minFreeRatio: number) {
    this.#host = host;
    this.#maxBytes = maxBytes;
    this.#minFreeRatio = minFreeRatio;
  }

  /** Whether publishes and deletes must run inside the section. */
  get limited(): boolean {
    return this.#maxBytes !== undefined || this.#minFreeRatio > 0;
  }

  /**
   * Runs `fn` holding the root's capacity section. Every change to the bytes
   * under the root made by a limited tier happens inside it, so the shared
   * count stays exact. `initialCount`: the opener's walk, used when no count exists yet.
   */
  async section<T>(fn: () => Promise<T>, initialCount?: number): Promise<T> {
    const prev = this.#queue;
    let done!: () => void;
    this.#queue = new Promise<void>((r) => {
      done = r;
    });
    await prev;
    let lock: FsLock | undefined;
    try {
      lock = await this.#host.locks.acquire(CAPACITY_LOCK);
      this.#held = lock;
      const stored = await this.#read();
      if (this.#maxBytes !== undefined && stored === undefined && initialCount !== undefined) {
        this.bytes = initialCount;
        await this.#write();
      } else if (this.#maxBytes !== undefined && (stored === undefined || lock.tookOver)) {
        // A holder that died inside this section may have left the count wrong: recount.
        await this.recount();
      } else this.bytes = stored ?? 0;
      const before = this.bytes;
      try {
        return await fn();
      } finally {
        // Evictions count even when the write that asked for them fails afterwards.
        if (this.bytes !== before) await this.#write();
      }
    } finally {
      this.#held = undefined;
      await lock?.release();
      done();
    }
  }

  /**
   * Inside the section, before acting on what it guards: the capacity lock's
   * lease must still hold (a stall past it lets another process take the section,
   * and two holders would evict and count at once). UNAVAILABLE, retryable, if not.
   */
  assertHeld(key?: string): void {
    if (!this.#held || this.#held.valid) return;
    throw new TierError(
      'UNAVAILABLE',
      "lost the capacity lock's lease (this process stalled past lockLeaseMs): nothing more is changed",
      { key, tier: this.#host.name, retryable: true },
    );
  }

  /** Inside the section: the count from a walk of the root. */
  async recount(): Promise<void> {
    this.bytes = await this.#host.reindex();
    await this.#write();
  }

  /**
   * Counts `bytes` about to be written into the partial copy `entry` (its
   * policy name), evicting first so they fit: a block is never written past
   * the budget. CAPACITY when they cannot fit.
   */
  async reserve(key: string, entry: string, bytes: number): Promise<void> {
    await this.section(async () => {
      await this.makeRoom(entry, bytes, 0, undefined, true, key);
      this.bytes += bytes;
    });
  }

  /** Adds `delta` to the count (a reservation taken back, a partial removed outside a section). */
  async adjust(delta: number): Promise<void> {
    if (delta === 0) return;
    await this.section(async () => {
      this.bytes += delta;
    });
  }

  /**
   * Inside the section: evicts until an object of `size` bytes replacing one of
   * `old` bytes fits (its data already on disk, as a temp file, unless
   * `pending`: bytes not written yet). `key` itself is never a victim
   * (`label`: the key errors name). CAPACITY when every remaining entry is pinned or in use.
   */
  async makeRoom(
    key: string,
    size: number,
    old: number,
    signal: AbortSignal | undefined,
    pending = false,
    label = key,
  ): Promise<void> {
    const { policy } = this.#host;
    policy.acquire(key);
    try {
      let recounted = false;
      for (;;) {
        throwIfAborted(signal, key);
        const need = await this.#deficit(size, old, pending);
        if (need <= 0) {
          this.assertHeld(label);
          return;
        }
        const victims = policy.victims(need).filter((v) => v !== key);
        if (victims.length === 0) {
          if (!recounted) {
            // Other processes may have written or deleted since we looked: recount.
            recounted = true;
            await this.recount();
            continue;
          }
          throw new TierError(
            'CAPACITY',
            `no room for '${label}' (${size} bytes): ${Math.ceil(need)} more bytes are needed and every ` +
              'remaining entry is pinned or being read — raise maxBytes, lower minFreeRatio or unpin entries',
            { key: label, tier: this.#host.name, retryable: false, details: { size, need } },
          );
        }
        for (const v of victims) {
          this.assertHeld(label);
          await this.#host.evict(v);
        }
      }
    } finally {
      policy.release(key);
    }
  }

  /** CAPACITY for an object that could never fit under `maxBytes`; undefined when it could. */
  refuse(key: string, size: number | undefined): TierError | undefined {
    const max = this.#maxBytes;
    if (max === undefined || size === undefined || size <= max) return undefined;
    return new TierError('CAPACITY', `object '${key}' of ${size} bytes exceeds maxBytes ${max}`, {
      key,
      tier: this.#host.name,
      retryable: false,
      details: { size, maxBytes: max },
    });
  }

  /** Bytes to free before `size` bytes replacing `old` fit; ≤ 0 when they fit. */
  async #deficit(size: number, old: number, pending: boolean): Promise<number> {
    const max = this.#maxBytes;
    let need = max === undefined ? Number.NEGATIVE_INFINITY : this.bytes - old + size - max;
    if (this.#minFreeRatio > 0) {
      // A temp file is already on disk (a block about to be written is not); the
      // rename frees the old object's blocks.
      const s = await fsp.statfs(this.#host.root);
      const coming = pending ? size : 0;
      need = Math.max(need, this.#minFreeRatio * s.blocks * s.bsize - s.bavail * s.bsize + coming - old);
    }
    return need;
  }

  async #read(): Promise<number | undefined> {
    try {
      const body = JSON.parse(await fsp.readFile(this.#host.usageFile, 'utf8')) as {
        bytes?: unknown;
        v?: unknown;
      };
      return body.v === USAGE_VERSION && typeof body.bytes === 'number' && body.bytes >= 0
        ? body.bytes
        : undefined;
    } catch {
      return undefined;
    }
  }

  async #write(): Promise<void> {
    if (this.#maxBytes === undefined) return;
    // A count written after the lease ran out could overwrite the new holder's.
    if (this.#held && !this.#held.valid) return;
    const tmp = this.#host.tmpPath('c');
    const path = this.#host.usageFile;
    try {
      await fsp.writeFile(tmp, JSON.stringify({ v: USAGE_VERSION, bytes: Math.max(0, this.bytes) }));
      await fsp.rename(tmp, path);
    } catch (err) {
      await fsp.unlink(tmp).catch(() => {});
      if (!NO_SPACE.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      // A full disk: no count at all (an unlink needs no space) makes the next holder recount from the disk.
      await fsp.unlink(path).catch(() => {});
    }
  }
}
