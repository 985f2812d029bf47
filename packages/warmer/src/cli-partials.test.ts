/**
 * Partial copies through the CLI: `tierkit ls` lists them (state `partial N%`,
 * SIZE the bytes present) next to complete objects, and `purge` removes them,
 * `--max-bytes 0` included.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createStack, MemoryTier } from '@tierkit/tier-core';
import { createFsTier } from '@tierkit/tier-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, ensureBuilt, tierkit } from './cli-harness.js';

const BLOCK = 64 * 1024;
let work: string;

beforeAll(async () => {
  await ensureBuilt();
  work = await mkdtemp(join(tmpdir(), 'tierkit-partials-'));
}, 120_000);
afterAll(() => rm(work, { recursive: true, force: true }));

/** A cache holding `whole.bin` complete and `a.bin`, `b.bin` in part (range reads). */
async function cacheWithPartials(name: string): Promise<string> {
  const root = join(work, name);
  const origin = new MemoryTier({ name: 'origin' });
  for (const [k, seed] of [
    ['a.bin', 1],
    ['b.bin', 2],
    ['whole.bin', 3],
  ] as const)
    await origin.write(k, bytes(16 * BLOCK, seed));
  const stack = createStack([createFsTier({ root, fsync: false }), origin], { blockSize: BLOCK });
  await stack.read('a.bin', { range: { offset: 0, length: BLOCK } });
  await stack.read('b.bin', { range: { offset: 4 * BLOCK, length: 3 * BLOCK } });
  await stack.read('whole.bin');
  await stack.close();
  return root;
}

const partials = async (root: string) =>
  (await readdir(join(root, '.tierkit', 'partial'))).filter((n) => !n.startsWith('.'));

describe('partial copies in the CLI', () => {
  it('ls lists partials with the bytes present; --partial lists only them', async () => {
    const root = await cacheWithPartials('ls');
    const ls = await tierkit(['ls', '--cache', root, '--json']);
    expect(ls.code, ls.stderr).toBe(0);
    const out = JSON.parse(ls.stdout);
    const rows = out.entries as { key: string; size: number; state: string }[];
    expect(rows.map((r) => [r.key, r.size, r.state]).sort()).toEqual([
      ['a.bin', BLOCK, 'partial 6%'],
      ['b.bin', 3 * BLOCK, 'partial 19%'],
      ['whole.bin', 16 * BLOCK, 'cached'],
    ]);
    // The cache's byte count includes them: what the budget holds them to.
    expect(out.totalBytes).toBe(20 * BLOCK);
    const only = JSON.parse((await tierkit(['ls', '--cache', root, '--partial', '--json'])).stdout);
    expect(only.entries.map((r: { key: string }) => r.key)).toEqual(['a.bin', 'b.bin']);
    const text = await tierkit(['ls', '--cache', root]);
    expect(text.stdout).toMatch(/^b\.bin\s+192(\.0)? KiB\s+partial 19%/m);
  });

  it('purge --max-bytes 0 removes partials as well as objects; --older-than takes idle partials', async () => {
    const root = await cacheWithPartials('purge');
    const r = await tierkit(['purge', '--cache', root, '--max-bytes', '0', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.overBudget).toHaveLength(3);
    expect(rep).toMatchObject({ bytesBefore: 20 * BLOCK, bytesAfter: 0, entriesAfter: 0 });
    expect(await partials(root)).toEqual([]);
    const again = await cacheWithPartials('idle');
    const idle = await tierkit(['purge', '--cache', again, '--older-than', '1s', '--json'], {
      TIERKIT_NOW_MS: String(Date.now() + 3_600_000),
    });
    expect(idle.code, idle.stderr).toBe(0);
    expect(await partials(again)).toEqual([]);
  });
});

describe('warm with an object larger than the cache', () => {
  it('reports it as too-large (counted, in --json, with a warning) and exits 0; the rest is warmed', async () => {
    const origin = join(work, 'origin-big');
    await mkdir(join(origin, 'm'), { recursive: true });
    await writeFile(join(origin, 'm', 'big.bin'), bytes(3 * 1024 * 1024, 7));
    await writeFile(join(origin, 'm', 'small.bin'), bytes(1000, 8));
    const cacheDir = join(work, 'cache-small');
    const cache = `${pathToFileURL(cacheDir).href}?maxBytes=1MiB`;
    const r = await tierkit(['warm', '--cache', cache, '--origin', origin, 'm/', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ ok: true, tooLarge: 1, fetched: 1, failed: 0 });
    const big = doc.items.find((i: { key: string }) => i.key === 'm/big.bin');
    expect(big).toMatchObject({ status: 'too-large' });
    expect(big.warning).toMatch(/too large for the cache/);
    const text = await tierkit(['warm', '--cache', cache, '--origin', origin, 'm/']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stderr).toMatch(/^warning\s+m\/big\.bin: too large for the cache/m);
    expect(text.stdout).toMatch(/^too-large\s+m\/big\.bin/m);
    expect(text.stdout).toMatch(/1 too large for the cache \(not cached\)/);
  });
});
