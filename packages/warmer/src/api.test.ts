import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createStack, MemoryTier } from '@tierkit/tier-core';
import { createFsTier } from '@tierkit/tier-fs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  bake,
  globToRegExp,
  manifestFromModelJson,
  parseManifest,
  purge,
  schedulePurge,
  TierkitMetrics,
  verify,
  warm,
} from './index.js';

const dirs: string[] = [];
async function temp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'tierkit-warmer-api-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function origin(): Promise<MemoryTier> {
  const m = new MemoryTier({ name: 'origin' });
  for (let i = 0; i < 6; i++) await m.write(`m/part-${i}.bin`, new Uint8Array(300_000).fill(i));
  await m.write('other/x', new Uint8Array([1]));
  return m;
}

describe('manifests', () => {
  it('globs, items and model.json', () => {
    expect(globToRegExp('m/*.bin').test('m/a.bin')).toBe(true);
    expect(globToRegExp('m/*.bin').test('m/x/a.bin')).toBe(false);
    expect(globToRegExp('m/**/a.bin').test('m/a.bin')).toBe(true);
    expect(globToRegExp('m/**').test('m/x/y')).toBe(true);
    expect(parseManifest(['a', 'b/', 'c/*.x'])).toEqual({ keys: ['a'], prefixes: ['b/'], globs: ['c/*.x'] });
    expect(manifestFromModelJson({ download_files_from: 's3://b/p/', download_files_to: '/var/m' })).toEqual({
      origin: 's3://b/p/',
      prefixes: [''],
      cache: 'file:///var/m',
    });
    expect(manifestFromModelJson({ download_files_from: 'models/llama' }).prefixes).toEqual([
      'models/llama/',
    ]);
    expect(() => parseManifest({ keyz: [] })).toThrow(/unknown field 'keyz'/);
  });
});

describe('warm, verify, purge, bake (API)', () => {
  it('reports progress, honours concurrency, aborts cleanly and resumes', async () => {
    const root = await temp();
    const stack = createStack([createFsTier({ root, fsync: false }), await origin()], { blockSize: 65536 });
    const ac = new AbortController();
    let maxActive = 0;
    const s1 = await warm(
      stack,
      { prefixes: ['m/'] },
      {
        concurrency: 2,
        signal: ac.signal,
        onProgress: (p) => {
          maxActive = Math.max(maxActive, p.active.length);
        },
        onItem: (i) => {
          if (i.key === 'm/part-1.bin') ac.abort();
        },
      },
    );
    expect(maxActive).toBeLessThanOrEqual(2);
    expect(s1.aborted).toBe(true);
    expect(s1.ok).toBe(false);
    const progress: number[] = [];
    const s2 = await warm(stack, { globs: ['m/*.bin'] }, { onProgress: (p) => progress.push(p.filesDone) });
    expect(s2.ok).toBe(true);
    expect(s2.fresh + s2.fetched).toBe(6);
    expect(s2.fresh).toBeGreaterThanOrEqual(2);
    expect(progress.at(-1)).toBe(s2.fetched);
    const v = await verify(stack.tiers[0] as ReturnType<typeof createFsTier>, { origin: stack.tiers[1] });
    expect(v).toMatchObject({ ok: 6, bad: 0 });
    await stack.close();
  });

  it('after a resumed fill, counts the bytes fetched from the origin, not the object sizes', async () => {
    const block = 65536;
    const size = 20 * block + 123;
    for (const instrumented of [false, true]) {
      const o = new MemoryTier({ name: 'origin' });
      await o.write(
        'big.bin',
        new Uint8Array(size).map((_, i) => i % 253),
      );
      await o.write('small.bin', new Uint8Array(1000).fill(3));
      const metrics = new TierkitMetrics();
      const origin = instrumented ? metrics.instrument(o) : o;
      const stack = createStack([createFsTier({ root: await temp(), fsync: false }), origin], {
        blockSize: block,
      });
      // A reader already took the first five blocks: the cache holds a partial copy.
      await stack.read('big.bin', { range: { offset: 0, length: 5 * block } });
      const s = await warm(stack, { keys: ['big.bin', 'small.bin'] });
      expect(s).toMatchObject({ ok: true, fetched: 2, bytesTotal: size + 1000 });
      expect(s.bytesFetched, `instrumented: ${instrumented}`).toBe(size - 5 * block + 1000);
      const again = await warm(stack, { keys: ['big.bin', 'small.bin'] });
      expect(again).toMatchObject({ fresh: 2, bytesFetched: 0 });
      await stack.close();
    }
  });

  it('bakes a warm tier-fs root with checksums and pins; purges on a schedule', async () => {
    const target = join(await temp(), 'image', 'models');
    const o = await origin();
    const s = await bake(o, { prefixes: ['m/'] }, target, { pin: true });
    expect(s).toMatchObject({ fetched: 6, pinned: 6, ok: true });
    const baked = JSON.parse(await readFile(join(target, '.tierkit', 'baked.json'), 'utf8'));
    expect(baked).toMatchObject({ objects: 6, origin: 'origin' });
    // A directory origin is recorded by its URL.
    const dirOrigin = createFsTier({ root: join(target, '..', '..', 'share'), name: 'share' });
    await dirOrigin.write('x/a.bin', new Uint8Array([1, 2]));
    const target2 = join(target, '..', 'from-dir');
    expect(await bake(dirOrigin, { prefixes: ['x/'] }, target2)).toMatchObject({ fetched: 1 });
    expect(JSON.parse(await readFile(join(target2, '.tierkit', 'baked.json'), 'utf8')).origin).toBe(
      pathToFileURL(dirOrigin.root).href,
    );
    await dirOrigin.close();
    const cache = createFsTier({ root: target });
    const v = await verify(cache, { origin: o });
    expect(v).toMatchObject({ ok: 6 });
    expect((await purge(cache, { maxBytes: 0 })).overBudget).toEqual([]);
    for (let i = 0; i < 6; i++) await cache.unpin(`m/part-${i}.bin`);
    const metrics = new TierkitMetrics();
    metrics.trackCache(cache);
    const sched = schedulePurge(cache, {
      checkUnusedEvery: '1h',
      maxBytes: 600_000,
      onPurge: (r) => metrics.purged(r),
    });
    const r = await sched.runNow();
    sched.stop();
    expect(r.overBudget).toHaveLength(4);
    expect(await metrics.text()).toMatch(/tierkit_cache_entries\{tier="fs"\} 2/);
    expect(() => schedulePurge(cache, { checkUnusedEvery: '1 week' })).toThrow(/invalid duration/);
    await cache.close();
  });
});
