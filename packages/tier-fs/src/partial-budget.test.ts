/**
 * Partial copies are entries of the budget: their blocks are counted (before
 * they are written) under maxBytes, they are evicted in LRU order like any
 * entry, purged, and reclaimed at open when nothing can use them.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createStack, MemoryTier } from '@tierkit/tier-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { diskUsage, runFixture, tempDir } from './test-utils.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function pattern(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 7 + (i >>> 11)) & 0xff;
  return out;
}

async function usageCount(root: string): Promise<number> {
  return JSON.parse(await readFile(join(root, '.tierkit', 'usage.json'), 'utf8')).bytes;
}

async function partialDirs(root: string): Promise<string[]> {
  return (await readdir(join(root, '.tierkit', 'partial'))).filter((n) => !n.startsWith('.'));
}

describe('partial copies in the budget', () => {
  let dir = '';
  let cleanup = async () => {};
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir('pbudget'));
  });
  afterAll(() => cleanup());

  const block = 64 * KiB;

  async function setup(name: string, maxBytes: number, objects: number, size: number) {
    const origin = new MemoryTier({ name: 'origin' });
    const data = new Map<string, Uint8Array>();
    for (let i = 0; i < objects; i++) {
      const bytes = pattern(size, i);
      data.set(`o${i}.bin`, bytes);
      await origin.write(`o${i}.bin`, bytes);
    }
    const root = join(dir, name);
    const cache = new FsTier({ root, maxBytes, fsync: false });
    const stack = createStack([cache, origin], { blockSize: block });
    return { root, cache, stack, data, origin };
  }

  it('range reads count their blocks: the count and the disk stay within maxBytes, and partials are evicted', async () => {
    // The case, scaled down: three objects of 1 MiB under a 1.5 MiB budget, read in ranges.
    const { root, cache, stack, data } = await setup('ranges', 1.5 * MiB, 3, MiB);
    for (const k of ['o0.bin', 'o1.bin', 'o2.bin']) {
      for (const offset of [0, 3 * block, 9 * block]) {
        const got = await stack.read(k, { range: { offset, length: 2 * block } });
        expect(
          Buffer.compare(Buffer.from(got!), Buffer.from(data.get(k)!.subarray(offset, offset + 2 * block))),
        ).toBe(0);
      }
    }
    // A whole read completes o0 (its partial published as the object: counted once).
    expect(Buffer.compare(Buffer.from((await stack.read('o0.bin'))!), Buffer.from(data.get('o0.bin')!))).toBe(
      0,
    );
    const count = await usageCount(root);
    expect(count).toBeLessThanOrEqual(1.5 * MiB);
    expect(await diskUsage(join(root, 'o0.bin'))).toBe(MiB);
    const partials = await diskUsage(join(root, '.tierkit', 'partial'));
    // What the count says is what is on the disk: the object and the partials' blocks (plus their small files).
    expect(MiB + partials).toBeGreaterThanOrEqual(count);
    expect(MiB + partials).toBeLessThanOrEqual(count + 64 * KiB);
    expect(cache.evictions).toBeGreaterThan(0);
    // A new process agrees with the count.
    const again = new FsTier({ root, maxBytes: 1.5 * MiB, fsync: false });
    await again.ready;
    expect(again.usedBytes).toBe(count);
    await again.close();
    await stack.close();
  });

  it('an idle partial is evicted before a hot complete object (LRU order)', async () => {
    const { root, cache, stack } = await setup('lru', 2 * MiB, 3, MiB);
    await stack.read('o0.bin', { range: { offset: 0, length: 4 * block } }); // a partial of o0, now idle
    await stack.read('o1.bin'); // complete
    await stack.read('o1.bin', { range: { offset: 0, length: 10 } }); // and hot
    expect(await partialDirs(root)).toHaveLength(1);
    // o2 needs 1 MiB: 0.25 MiB of o0's partial and 1 MiB of o1 are there; one victim is enough.
    await stack.read('o2.bin');
    expect(await partialDirs(root)).toEqual([]);
    expect(existsSync(join(root, 'o1.bin'))).toBe(true);
    expect(existsSync(join(root, 'o2.bin'))).toBe(true);
    expect(await usageCount(root)).toBe(2 * MiB);
    expect(cache.evictions).toBe(1);
    await stack.close();
  });

  it('purge removes partials: idle ones, and all of them down to 0 bytes', async () => {
    const { root, cache, stack } = await setup('purge', 8 * MiB, 3, MiB);
    await stack.read('o0.bin', { range: { offset: 0, length: block } });
    await stack.read('o1.bin', { range: { offset: 5 * block, length: 3 * block } });
    await stack.read('o2.bin');
    expect(await partialDirs(root)).toHaveLength(2);
    expect(cache.usedBytes).toBe(MiB + 4 * block);
    // Listed with the bytes present (list() yields complete objects only).
    expect((await cache.partials()).map((p) => [p.key, p.size, p.bytesPresent, p.blockSize])).toEqual([
      ['o0.bin', MiB, block, block],
      ['o1.bin', MiB, 3 * block, block],
    ]);
    expect((await cache.partials('o1')).map((p) => p.key)).toEqual(['o1.bin']);
    const listed: string[] = [];
    for await (const m of cache.list()) listed.push(m.key);
    expect(listed).toEqual(['o2.bin']);
    const removed = await cache.purgeToBytes(0);
    expect(removed.sort()).toEqual(['o0.bin (partial)', 'o1.bin (partial)', 'o2.bin']);
    expect(await cache.partials()).toEqual([]);
    expect(await partialDirs(root)).toEqual([]);
    expect(existsSync(join(root, 'o2.bin'))).toBe(false);
    expect(await usageCount(root)).toBe(0);
    expect(cache.usedBytes).toBe(0);
    // An idle purge takes a partial too.
    await stack.read('o1.bin', { range: { offset: 0, length: block } });
    expect(await cache.purgeIdle(0)).toHaveLength(1);
    expect(await partialDirs(root)).toEqual([]);
    await stack.close();
  });

  it('at open, a partial whose object is already published (a publisher died before retiring it) is reclaimed; others stay', async () => {
    const { root, cache, stack, origin } = await setup('reclaim', 8 * MiB, 2, MiB);
    await stack.read('o0.bin', { range: { offset: 0, length: block } });
    await stack.read('o1.bin', { range: { offset: 0, length: block } });
    const names = (await partialDirs(root)).sort();
    const partial = (n: string) => join(root, '.tierkit', 'partial', n);
    const keyOf = async (n: string) => JSON.parse(await readFile(join(partial(n), 'info.json'), 'utf8')).key;
    const p0 = (await keyOf(names[0]!)) === 'o0.bin' ? names[0]! : names[1]!;
    const p1 = names.find((n) => n !== p0)!;
    // Stand in for a publisher that died between its rename and retiring the partial:
    // keep a copy of o0's partial, complete the object, put the copy back.
    const saved = new Map<string, Buffer>();
    for (const f of await readdir(partial(p0))) saved.set(f, await readFile(join(partial(p0), f)));
    await stack.read('o0.bin');
    expect(await partialDirs(root)).toEqual([p1]);
    await cache.close();
    await mkdir(partial(p0));
    for (const [f, bytes] of saved) await writeFile(join(partial(p0), f), bytes);
    const t = new FsTier({ root, maxBytes: 8 * MiB, fsync: false });
    await t.ready;
    expect(await partialDirs(root)).toEqual([p1]);
    expect(t.usedBytes).toBe(MiB + block);
    expect(await usageCount(root)).toBe(MiB + block);
    await t.close();
    await origin.close();
  });

  it('four processes range-reading under pressure: du of the cache (.tierkit included) never exceeds maxBytes + one block per process', async () => {
    const shm = existsSync('/dev/shm')
      ? await mkdtemp('/dev/shm/tierkit-pressure-')
      : await mkdtemp(join(dir, 'p-'));
    try {
      const originRoot = join(shm, 'origin');
      const cacheRoot = join(shm, 'cache');
      await mkdir(originRoot, { recursive: true });
      const keys: string[] = [];
      for (let i = 0; i < 8; i++) {
        keys.push(`m/o${i}.bin`);
        await mkdir(join(originRoot, 'm'), { recursive: true });
        await writeFile(join(originRoot, `m/o${i}.bin`), pattern(2 * MiB + i * 777, i));
      }
      const maxBytes = 3 * MiB;
      const bs = 128 * KiB;
      // The cache directory exists before the children start, so the sampler sees it from the first byte.
      await new FsTier({ root: cacheRoot, maxBytes, fsync: false }).open().then((t) => t.close());
      let peak = 0;
      let samples = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peak = Math.max(peak, await diskUsage(cacheRoot));
          samples++;
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const children = [0, 1, 2, 3].map((id) =>
        runFixture('pressure-reader.mjs', [
          cacheRoot,
          originRoot,
          String(maxBytes),
          String(bs),
          '40',
          String(id * 7919 + 1),
          ...keys,
        ]),
      );
      const results = await Promise.all(children.map((c) => c.exited));
      sampling = false;
      await sampler;
      const reports = children.map((c) => JSON.parse(c.lines.at(-1) ?? '{}'));
      for (const [i, r] of results.entries())
        expect(r.code, `${r.stderr} ${JSON.stringify(reports[i])}`).toBe(0);
      for (const rep of reports) {
        expect(rep.bad).toEqual([]);
        expect(rep.errors).toEqual([]);
      }
      expect(reports.reduce((n, r) => n + r.evictions, 0)).toBeGreaterThan(0);
      peak = Math.max(peak, await diskUsage(cacheRoot));
      console.log(
        `pressure: ${samples} samples, peak du ${peak} bytes, bound ${maxBytes + 4 * bs}; reports ${JSON.stringify(reports.map((r) => ({ bypassed: r.bypassed, evictions: r.evictions, warnings: r.warnings })))}`,
      );
      expect(samples).toBeGreaterThan(1);
      expect(peak).toBeLessThanOrEqual(maxBytes + 4 * bs);
      // Nothing of the operations outlives them.
      expect(await readdir(join(cacheRoot, '.tierkit', 'tmp'))).toEqual([]);
      expect(
        (await readdir(join(cacheRoot, '.tierkit', 'partial'))).filter((n) => n.startsWith('.')),
      ).toEqual([]);
    } finally {
      await rm(shm, { recursive: true, force: true });
    }
  }, 120_000);
});
