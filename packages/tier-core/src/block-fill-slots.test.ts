/**
 * A fill's request slots: a span holds one only while its GET runs, not
 * through its block writes; fetching runs ahead of slow writes by a bounded
 * backlog; the bytes still land exact. Counted, never timed.
 */
import { describe, expect, it } from 'vitest';
import { DelegatingTier } from './layers/delegate.js';
import { MemoryTier } from './memory.js';
import { createStack } from './stack.js';
import { MemoryBlockTier } from './test-block-cache.js';
import { patternBytes } from './testing/index.js';
import type { PartialEntry, PartialOptions, ReadIntoOptions, SourceMeta } from './tier.js';

const MiB = 1024 * 1024;
/** Byte-exact (a deep equality of many MiB would take minutes). */
const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
/** One block per piece (a piece is about 8 MiB of whole blocks). */
const BLOCK = 8 * MiB;

/** Counts the GETs of the origin, and how many block writes were held when each started. */
class CountingOrigin extends DelegatingTier {
  gets = 0;
  heldAtGet: number[] = [];
  held: () => number = () => 0;
  override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
    this.gets++;
    this.heldAtGet.push(this.held());
    return this.inner.readInto(key, target, options);
  }
}

/** A block cache whose block writes wait until they are let go. */
class HeldWrites extends MemoryBlockTier {
  readonly waiting: (() => void)[] = [];
  #open = false;
  #arrived: (() => void) | undefined;
  #want = 0;

  /** Resolves once `n` writes are being held. */
  arrived(n: number): Promise<void> {
    if (this.waiting.length >= n) return Promise.resolve();
    this.#want = n;
    return new Promise((resolve) => {
      this.#arrived = resolve;
    });
  }

  openAll(): void {
    this.#open = true;
    for (const go of this.waiting.splice(0)) go();
  }

  override async openPartial(
    key: string,
    source: SourceMeta,
    options: PartialOptions,
  ): Promise<PartialEntry> {
    const entry = await super.openPartial(key, source, options);
    const write = entry.writeBlock.bind(entry);
    entry.writeBlock = async (b, bytes) => {
      if (!this.#open) {
        await new Promise<void>((resolve) => {
          this.waiting.push(resolve);
          if (this.waiting.length >= this.#want) this.#arrived?.();
        });
      }
      await write(b, bytes);
    };
    return entry;
  }
}

describe('request slots of a block fill', () => {
  it('a slot is free again when its GET ends: the next GET starts while the last piece is still being written', async () => {
    const cache = new HeldWrites({ name: 'cache' });
    const originMem = new MemoryTier({ name: 'origin' });
    const origin = new CountingOrigin(originMem);
    origin.held = () => cache.waiting.length;
    // One span at a time: before, the second GET waited for the first piece's write.
    const stack = createStack([cache, origin], { blockSize: BLOCK, fillConcurrency: 1 });
    const bytes = patternBytes(7 * BLOCK + 5, 3);
    await originMem.write('m', bytes);
    const read = stack.read('m');
    // Four pieces fetched and held unwritten: each GET after the first began while writes were held.
    await cache.arrived(4);
    expect(origin.gets).toBeGreaterThanOrEqual(4);
    expect(origin.heldAtGet.slice(0, 4)).toEqual([0, 1, 2, 3]);
    cache.openAll();
    expect(same(await read, bytes)).toBe(true);
    expect(origin.gets).toBe(8);
    // The backlog of fetched, unwritten bytes is bounded (4 pieces): no GET began with more held.
    expect(Math.max(...origin.heldAtGet)).toBeLessThanOrEqual(4);
    expect(origin.heldAtGet[4]).toBeLessThan(4);
    expect(same(await cache.read('m'), bytes)).toBe(true);
    await stack.close();
  });

  it('a GET that fails after earlier pieces were handed to the writes: those finish, the read fails, the next read is exact', async () => {
    const cache = new HeldWrites({ name: 'cache' });
    const originMem = new MemoryTier({ name: 'origin' });
    const origin = new CountingOrigin(originMem);
    let failAt = 3;
    const read = origin.readInto.bind(origin);
    origin.readInto = async (key, target, options) => {
      if (--failAt === 0) throw new Error('connection reset');
      return read(key, target, options);
    };
    const stack = createStack([cache, origin], { blockSize: BLOCK, fillConcurrency: 1 });
    const bytes = patternBytes(4 * BLOCK, 5);
    await originMem.write('m', bytes);
    const first = stack.read('m');
    await cache.arrived(2);
    cache.openAll();
    await expect(first).rejects.toThrow();
    expect(same(await stack.read('m'), bytes)).toBe(true);
    expect(same(await cache.read('m'), bytes)).toBe(true);
    await stack.close();
  });
});
