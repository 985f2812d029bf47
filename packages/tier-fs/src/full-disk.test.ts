/**
 * A cache on a full disk (a real small filesystem, as root): it opens, and it
 * serves its complete entries, although nothing can be written — neither the
 * use journal's snapshot nor the shared byte count — and leaves no temp file.
 */

import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createStack, DelegatingTier, MemoryTier, type ReadIntoOptions } from '@tierkit/tier-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { fillDisk, type SmallFs, smallFs } from './test-mounts.js';
import { tempDir } from './test-utils.js';

let base = '';
let cleanup = async () => {};
let disk: SmallFs | string = 'not made';
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('full'));
  disk = smallFs(base, 16);
  if (typeof disk === 'string') console.warn(`full-disk.test: skipping: ${disk}`);
});
afterAll(async () => {
  if (typeof disk !== 'string') disk.unmount();
  await cleanup();
});

const blob = (seed: number, size: number) =>
  Uint8Array.from({ length: size }, (_, i) => (i * 31 + seed) & 0xff);

describe('a full disk', () => {
  it('the tier opens and serves every complete entry; writes fail typed; it recovers when space returns', async (ctx) => {
    if (typeof disk === 'string') return ctx.skip(disk);
    const root = join(disk.dir, 'cache');
    const entries = new Map([...Array(4)].map((_, i) => [`m/part-${i}.bin`, blob(i, 1024 * 1024 + i)]));
    const first = new FsTier({ root, maxBytes: 64 * 1024 * 1024, flushIntervalMs: 0 });
    for (const [k, v] of entries) await first.write(k, v);
    for (const k of entries.keys()) await first.read(k);
    await first.close();
    const filler = join(disk.dir, 'filler');
    expect(fillDisk(filler)).toBeGreaterThan(0);

    for (const options of [{ maxBytes: 64 * 1024 * 1024 }, {}]) {
      const tier = new FsTier({ root, flushIntervalMs: 0, ...options });
      await tier.ready;
      for (const [k, v] of entries) {
        expect(Buffer.from((await tier.read(k))!).equals(Buffer.from(v))).toBe(true);
        expect((await tier.stat(k))?.size).toBe(v.byteLength);
      }
      const err = await tier.write('m/new.bin', blob(9, 256 * 1024)).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'TierError', code: 'CAPACITY' });
      await tier.close();
      // Nothing half-written is left: no temp file of the journal, the count or the write.
      expect(readdirSync(join(root, '.tierkit', 'tmp'))).toEqual([]);
    }

    rmSync(filler);
    const after = new FsTier({ root, maxBytes: 64 * 1024 * 1024 });
    await after.write('m/new.bin', blob(9, 256 * 1024));
    expect((await after.read('m/new.bin'))?.byteLength).toBe(256 * 1024);
    expect(after.count).toBe(entries.size + 1);
    await after.close();
  });
});

describe('reads through a cache on a full disk', () => {
  it('every read succeeds byte-exact from the origin, whole and ranged, and the cache serves what it has', async (ctx) => {
    if (typeof disk === 'string') return ctx.skip(disk);
    const root = join(disk.dir, 'through');
    const origin = new MemoryTier({ name: 'origin' });
    const objects = new Map(
      [...Array(6)].map((_, i) => [`m/obj-${i}.bin`, blob(i + 20, 3 * 1024 * 1024 + i)]),
    );
    for (const [k, v] of objects) await origin.write(k, v);
    const cache = new FsTier({ root, name: 'nvme', flushIntervalMs: 0 });
    const warnings: string[] = [];
    const stack = createStack([cache, origin], {
      blockSize: 1024 * 1024,
      onWarning: (w) => warnings.push(`${w.op}: ${(w.error as Error).message}`),
    });
    // One object cached while there is room, and the partial copies of two more opened
    // (sparse files, no block written): their block writes are what meets the full disk.
    await stack.fill('m/obj-0.bin');
    for (const k of ['m/obj-2.bin', 'm/obj-3.bin']) {
      const p = await cache.openPartial(k, (await origin.stat(k))!, { blockSize: 1024 * 1024 });
      await p.close();
    }
    const filler = join(disk.dir, 'filler-2');
    fillDisk(filler);
    try {
      expect(await stack.read('m/obj-1.bin')).toBeDefined();
      const reads = [...objects].map(async ([k, v]) => {
        const whole = await stack.read(k);
        expect(Buffer.from(whole!).equals(Buffer.from(v)), k).toBe(true);
        const part = await stack.read(k, { range: { offset: 1024 * 1024 + 5, length: 100 } });
        expect(
          Buffer.from(part!).equals(Buffer.from(v.subarray(1024 * 1024 + 5, 1024 * 1024 + 105))),
          k,
        ).toBe(true);
      });
      await Promise.all(reads);
      expect(stack.stats().bypassed).toBeGreaterThan(0);
      expect((await cache.stat('m/obj-0.bin'))?.size).toBe(objects.get('m/obj-0.bin')!.byteLength);
      // Space is back: the cache fills again.
      rmSync(filler);
      await stack.fill('m/obj-5.bin');
      expect((await cache.stat('m/obj-5.bin'))?.size).toBe(objects.get('m/obj-5.bin')!.byteLength);
    } finally {
      rmSync(filler, { force: true });
      await stack.close();
    }
  });
});

describe('a stream when the disk fills under it', () => {
  it('goes on from the origin where the cache stopped, byte-exact', async (ctx) => {
    if (typeof disk === 'string') return ctx.skip(disk);
    const root = join(disk.dir, 'stream');
    const memory = new MemoryTier({ name: 'origin' });
    const obj = blob(77, 10 * 1024 * 1024 + 3);
    await memory.write('m/big.bin', obj);
    // The origin holds back every block past the first 2 MiB until the disk is full.
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    class Gated extends DelegatingTier {
      override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
        if ((options?.offset ?? 0) >= 2 * 1024 * 1024) await gate;
        return super.readInto(key, target, options);
      }
    }
    const warnings: string[] = [];
    const stack = createStack([new FsTier({ root, name: 'nvme', flushIntervalMs: 0 }), new Gated(memory)], {
      blockSize: 1024 * 1024,
      onWarning: (w) => warnings.push(`${w.op} ${(w.error as { code?: string }).code}`),
    });
    const filler = join(disk.dir, 'filler-3');
    try {
      const stream = (await stack.readStream('m/big.bin'))!;
      const hash = createHash('sha256');
      const it = stream[Symbol.asyncIterator]();
      hash.update((await it.next()).value as Uint8Array);
      fillDisk(filler);
      open();
      for (let r = await it.next(); !r.done; r = await it.next()) hash.update(r.value as Uint8Array);
      expect(hash.digest('hex')).toBe(createHash('sha256').update(obj).digest('hex'));
      expect(warnings).toContain('bypass CAPACITY');
    } finally {
      rmSync(filler, { force: true });
      await stack.close();
    }
  });
});
