import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStack } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { createFsTier } from '@tierkit/tier-fs';
import { createS3Tier } from '@tierkit/tier-s3';
import {
  type FaultProxy,
  type LocalS3,
  localS3ClientConfig,
  startFaultProxy,
  startLocalS3,
} from '@tierkit/tier-s3/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type WarmItemResult, warm } from './index.js';

const KiB = 1024;
const MiB = 1024 * KiB;

// A model as users have them: big shards, many small files, and a config listed last.
const shards = Array.from({ length: 4 }, (_, i) => ({ key: `m/shard-${i}.safetensors`, size: 12 * MiB + i }));
const smalls = Array.from({ length: 30 }, (_, i) => ({ key: `m/small-${i}.json`, size: 40 * KiB + i }));
const config = { key: 'm/config.json', size: 700 };
const all = [...shards, ...smalls, config];

let s3: LocalS3;
let proxy: FaultProxy;
const dirs: string[] = [];

beforeAll(async () => {
  s3 = await startLocalS3({ buckets: ['budget'] });
  proxy = await startFaultProxy({ target: s3.endpoint });
  const { credentials } = localS3ClientConfig(s3.endpoint);
  const writer = createS3Tier({ bucket: 'budget', endpoint: s3.endpoint, credentials });
  for (const [i, o] of all.entries()) await writer.write(o.key, patternBytes(o.size, i + 1));
  await writer.close();
});
afterAll(async () => {
  await proxy?.close();
  await s3?.close();
});
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function warmThroughProxy(maxRequestsInFlight: number) {
  const root = await mkdtemp(join(tmpdir(), 'tierkit-warm-budget-'));
  dirs.push(root);
  const { credentials } = localS3ClientConfig(proxy.endpoint);
  const origin = createS3Tier({
    bucket: 'budget',
    endpoint: proxy.endpoint,
    credentials,
    maxRequestsInFlight,
  });
  const stack = createStack([createFsTier({ root, fsync: false }), origin], { blockSize: 1 * MiB });
  proxy.stats.maxGetsInFlight = 0;
  const done: WarmItemResult[] = [];
  try {
    const summary = await warm(
      stack,
      { keys: all.map((o) => o.key) },
      { checksum: false, onItem: (r) => done.push(r) },
    );
    expect(summary.ok).toBe(true);
    expect(summary.fetched).toBe(all.length);
    for (const [i, o] of all.entries()) {
      const bytes = await readFile(join(root, o.key));
      expect(Buffer.compare(bytes, patternBytes(o.size, i + 1))).toBe(0);
    }
    return { done, maxGets: proxy.stats.maxGetsInFlight };
  } finally {
    await stack.close();
  }
}

describe('warm of many objects: one budget of GETs in flight across all of them', () => {
  it('never has more GETs at the server than the origin allows, with 35 objects at once wanting more', async () => {
    const { maxGets } = await warmThroughProxy(4);
    expect(maxGets).toBeLessThanOrEqual(4);
    expect(maxGets).toBeGreaterThanOrEqual(2);
  });

  it('with a budget as big as what the objects want, they pile up past it (the control)', async () => {
    // Each request held 100 ms at the proxy, so GETs overlap however fast or loaded the
    // machine is (without it a quick server can answer each before the next one starts).
    proxy.setShaping({ latencyMs: 100 });
    try {
      const { maxGets } = await warmThroughProxy(256);
      expect(maxGets).toBeGreaterThan(4);
    } finally {
      proxy.setShaping(undefined);
    }
  });

  it('small files do not wait behind the big shards', async () => {
    const { done } = await warmThroughProxy(4);
    const firstShard = Math.min(...shards.map((s) => done.findIndex((r) => r.key === s.key)));
    // Listed after the shards, yet some are done before any shard is: one object
    // queue of `concurrency` would have started none of them before a shard finished.
    const before = done.slice(0, firstShard).filter((r) => r.key !== config.key && r.size < MiB);
    expect(before.length).toBeGreaterThanOrEqual(1);
  });
});
