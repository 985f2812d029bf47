import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createStack, DelegatingTier, isTierError, type ReadOptions, type Tier } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { runFixture, tempDir } from './test-utils.js';

/** Records the ranges the origin serves. */
class Counting extends DelegatingTier {
  fetched = 0;
  readonly ranges: number[] = [];
  override async readStream(key: string, options?: ReadOptions) {
    const stream = await this.inner.readStream(key, options);
    this.ranges.push(options?.range?.offset ?? 0);
    stream?.on('data', (c: Uint8Array) => {
      this.fetched += c.byteLength;
    });
    return stream;
  }
}

const BS = 64 * 1024;
let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups) await c();
  cleanups = [];
});

async function setup(size: number) {
  const { dir, cleanup } = await tempDir('partial');
  cleanups.push(cleanup);
  const originFs = new FsTier({ root: join(dir, 'origin'), name: 'origin' });
  const bytes = patternBytes(size, 5);
  await originFs.write('models/m.safetensors', bytes);
  cleanups.unshift(() => originFs.close());
  const open = () => {
    const cache = new FsTier({ root: join(dir, 'cache'), name: 'cache' });
    const origin = new Counting(new FsTier({ root: join(dir, 'origin'), name: 'origin' }));
    const stack = createStack([cache, origin as Tier], { blockSize: BS, fillConcurrency: 4 });
    return { cache, origin, stack };
  };
  return { dir, originFs, bytes, open };
}

describe('tier-fs partial copies (block-granular read-through)', () => {
  it('a range read fetches only its blocks; partial entries survive a restart and are completed, not refetched', async () => {
    const size = 10 * BS + 123;
    const { dir, bytes, open } = await setup(size);
    const a = open();
    const got = await a.stack.read('models/m.safetensors', { range: { offset: 3 * BS - 10, length: 20 } });
    expect(got).toEqual(bytes.subarray(3 * BS - 10, 3 * BS + 10));
    expect(a.origin.ranges).toEqual([2 * BS]); // blocks 2 and 3: one span
    // Not served as an object yet: the plain path is empty until every block is there.
    expect(await a.cache.stat('models/m.safetensors')).toBeUndefined();
    await a.stack.close();

    const b = open();
    const whole = await b.stack.read('models/m.safetensors');
    expect(whole).toEqual(bytes);
    expect(b.origin.fetched).toBe(size - 2 * BS);
    expect(b.origin.ranges.sort((x, y) => x - y)).toEqual([0, 4 * BS]);
    // Published as a plain file at its key's path, with the origin's identity.
    expect(new Uint8Array(await readFile(join(dir, 'cache', 'models/m.safetensors')))).toEqual(bytes);
    expect((await b.cache.stat('models/m.safetensors'))?.source?.size).toBe(size);
    expect(await readdir(join(dir, 'cache', '.tierkit', 'partial'))).toEqual([]);
    await b.stack.close();
  });

  it('a block torn by a crash is fetched again, never served', async () => {
    const { dir, bytes, open } = await setup(4 * BS);
    const a = open();
    await a.stack.read('models/m.safetensors', { range: { offset: 0, length: 2 * BS } });
    await a.stack.close();
    // Damage block 1 as a power loss could: marker written, data not.
    const [partial] = await readdir(join(dir, 'cache', '.tierkit', 'partial'));
    const dataPath = join(dir, 'cache', '.tierkit', 'partial', partial!, 'data');
    const data = await readFile(dataPath);
    data.fill(0, BS + 100, BS + 200);
    await writeFile(dataPath, data);

    const b = open();
    expect(await b.stack.read('models/m.safetensors')).toEqual(bytes);
    expect(b.origin.ranges).toEqual([BS]); // blocks 1–3 in one span, block 0 kept
    expect(b.origin.fetched).toBe(3 * BS);
    await b.stack.close();
  });

  it('an object changed at the origin drops its partial copy', async () => {
    const { originFs, open } = await setup(4 * BS);
    const a = open();
    await a.stack.read('models/m.safetensors', { range: { offset: 0, length: 10 } });
    await a.stack.close();
    const next = patternBytes(3 * BS + 7, 9);
    await originFs.write('models/m.safetensors', next);
    const b = open();
    expect(await b.stack.read('models/m.safetensors')).toEqual(next);
    expect(b.origin.fetched).toBe(next.byteLength);
    await b.stack.close();
  });

  it('refuses a partial copy larger than the tier', async () => {
    const { dir } = await setup(10);
    const small = new FsTier({ root: join(dir, 'small'), maxBytes: 1000 });
    const err = await small.openPartial('k', { size: 5000, etag: '"x"' }, { blockSize: 100 }).catch((e) => e);
    expect(isTierError(err, 'CAPACITY')).toBe(true);
    const bad = await small.openPartial('../k', { size: 5 }, { blockSize: 100 }).catch((e) => e);
    expect(isTierError(bad, 'INVALID_KEY')).toBe(true);
    await small.close();
  });

  it('4 processes reading the same cold object fetch each block from the origin once', async () => {
    const size = 48 * BS + 999;
    const { dir, bytes } = await setup(size);
    const want = createHash('sha256').update(bytes).digest('hex');
    const children = Array.from({ length: 4 }, () =>
      runFixture('fill-reader.mjs', [
        join(dir, 'cache'),
        join(dir, 'origin'),
        'models/m.safetensors',
        String(BS),
      ]),
    );
    const results = [];
    for (const c of children) {
      const line = await c.waitFor(/^\{/, 60_000);
      const exit = await c.exited;
      expect(exit.code, exit.stderr).toBe(0);
      results.push(JSON.parse(line));
    }
    for (const r of results) {
      expect(r.sha).toBe(want);
      expect(r.size).toBe(size);
    }
    expect(results.reduce((n, r) => n + r.fetched, 0)).toBe(size);
  }, 90_000);
});
