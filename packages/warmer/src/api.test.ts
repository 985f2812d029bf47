import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  it('bakes a warm tier-fs root with checksums and pins; purges on a schedule', async () => {
    const target = join(await temp(), 'image', 'models');
    const o = await origin();
    const s = await bake(o, { prefixes: ['m/'] }, target, { pin: true });
    expect(s).toMatchObject({ fetched: 6, pinned: 6, ok: true });
    expect(JSON.parse(await readFile(join(target, '.tierkit', 'baked.json'), 'utf8')).objects).toBe(6);
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
