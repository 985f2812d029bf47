/**
 * `warm` records each fetched object's sha256 from the fill itself — hashed on
 * the digest worker as the blocks arrive — never by reading the cached file
 * again; `ls` and `stat` say whether a copy was verified against a digest its
 * origin stated, or published unverified (the origin offered none).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStack, DelegatingTier, MemoryTier, type ObjectMeta, type OpOptions } from '@tierkit/tier-core';
import { FsTier } from '@tierkit/tier-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, ensureBuilt, tierkit } from './cli-harness.js';
import { warm } from './index.js';

/** Counts the cache's own hashing of cached files (what `warm` must not need). */
class CountingFsTier extends FsTier {
  hashed = 0;
  override async computeChecksum(key: string, options?: OpOptions) {
    this.hashed++;
    return super.computeChecksum(key, options);
  }
}

/** An origin that states the sha256 of its objects, as S3 does with checksum mode on. */
class StatingOrigin extends DelegatingTier {
  override async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    const m = await this.inner.stat(key, options);
    const b = m && (await this.inner.read(key, options));
    if (!m || !b) return m;
    return { ...m, digests: [{ algorithm: 'sha256', value: createHash('sha256').update(b).digest('hex') }] };
  }
}

const dirs: string[] = [];
const objects = { 'm/a.bin': bytes(700_001, 1), 'm/b.bin': bytes(2_000_000, 2), 'm/c.json': bytes(300, 3) };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(ensureBuilt, 120_000);
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function setup(stating: boolean) {
  const root = await mkdtemp(join(tmpdir(), 'tierkit-warm-sha-'));
  dirs.push(root);
  const mem = new MemoryTier({ name: 'origin' });
  for (const [k, v] of Object.entries(objects)) await mem.write(k, v);
  const cache = new CountingFsTier({ root, fsync: false });
  const stack = createStack([cache, stating ? new StatingOrigin(mem) : mem], { blockSize: 65_536 });
  return { root, cache, stack };
}

describe('sha256 recorded during the fill', () => {
  it('a cold warm records every sha256 without hashing a cached file', async () => {
    const { cache, stack } = await setup(false);
    const summary = await warm(stack, { prefixes: ['m/'] });
    expect(summary.ok).toBe(true);
    for (const item of summary.items) {
      expect(item.status).toBe('fetched');
      expect(item.sha256).toBe(sha(objects[item.key as keyof typeof objects]));
      expect((await cache.entryInfo(item.key))?.checksum?.value).toBe(item.sha256);
    }
    expect(cache.hashed).toBe(0);
    // A second run finds them fresh, with the recorded sha256, still hashing nothing.
    const again = await warm(stack, { prefixes: ['m/'] });
    expect(again.items.map((i) => [i.status, i.sha256])).toEqual(
      summary.items.map((i) => ['fresh', i.sha256]),
    );
    expect(cache.hashed).toBe(0);
    await stack.close();
  });

  it('checksum: false records none', async () => {
    const { cache, stack } = await setup(false);
    const summary = await warm(stack, { keys: ['m/a.bin'] }, { checksum: false });
    expect(summary.items[0]?.sha256).toBeUndefined();
    expect((await cache.entryInfo('m/a.bin'))?.checksum).toBeUndefined();
    await stack.close();
  });
});

describe('ls and stat say whether a copy was verified', () => {
  it.each([
    [true, 'verified'],
    [false, 'unverified'],
  ] as const)('origin states a digest: %s → %s', async (stating, integrity) => {
    const { root, stack } = await setup(stating);
    expect((await warm(stack, { keys: ['m/a.bin'] })).ok).toBe(true);
    await stack.close();
    const ls = await tierkit(['ls', '--cache', root, '--json']);
    expect(ls.code, ls.stderr).toBe(0);
    expect(JSON.parse(ls.stdout).entries).toMatchObject([{ key: 'm/a.bin', state: 'cached', integrity }]);
    const text = await tierkit(['ls', '--cache', root]);
    if (integrity === 'unverified')
      expect(text.stdout).toMatch(/m\/a\.bin\s+\S+ KiB\s+cached \(unverified\)/);
    else expect(text.stdout).not.toMatch(/unverified/);
    const st = await tierkit(['stat', '--cache', root, 'm/a.bin', '--json']);
    expect(st.code, st.stderr).toBe(0);
    expect(JSON.parse(st.stdout).entries[0]).toMatchObject({ key: 'm/a.bin', integrity });
  });
});
