/**
 * The synthetic model read through every kind of tier — memory, a directory,
 * S3 (a real s3rver), and stacks of them — each tensor byte-exact against
 * the generator.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Model, openModel } from '@tierkit/model';
import {
  createMemoryTier,
  createStack,
  isTierError,
  type MetricsTier,
  type Tier,
  withMetrics,
} from '@tierkit/tier-core';
import { FsTier } from '@tierkit/tier-fs';
import type { LocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seed } from './seed.js';
import { GGUF_NAME, INDEX_NAME, planModel, tensorContent } from './synthetic.js';
import { s3Tier, seededS3 } from './test-setup.js';

const model = planModel(3 * 1024 * 1024, 3);
let server: LocalS3;
const dirs: string[] = [];
const tiers: Tier[] = [];

beforeAll(async () => {
  ({ server } = await seededS3(model, 'tiers'));
});
afterAll(async () => {
  for (const t of tiers) await t.close();
  await server?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'tierkit-model-'));
  dirs.push(d);
  return d;
}

async function checkAll(m: Model): Promise<number> {
  let n = 0;
  for await (const t of m.load({ maxBytesInFlight: 512 * 1024 })) {
    const want = tensorContent(t.tensor.file, t.name, t.tensor.length);
    expect(Buffer.compare(Buffer.from(want), Buffer.from(t.bytes)), t.name).toBe(0);
    n++;
  }
  return n;
}

const kinds: [string, () => Promise<Tier>][] = [
  [
    'memory',
    async () => {
      const t = createMemoryTier();
      await seed(t, model);
      return t;
    },
  ],
  [
    'fs (a directory as origin)',
    async () => {
      const t = new FsTier({ root: await dir(), name: 'nfs' });
      await seed(t, model);
      return t;
    },
  ],
  ['s3 (s3rver)', async () => s3Tier(server, 'tiers')],
  [
    'stack [fs cache, s3]',
    async () =>
      createStack([new FsTier({ root: await dir(), name: 'cache' }), s3Tier(server, 'tiers')], {
        blockSize: 64 * 1024,
      }),
  ],
  [
    'stack [memory, stack [fs, s3]]',
    async () =>
      createStack([
        createMemoryTier({ name: 'ram' }),
        createStack([new FsTier({ root: await dir(), name: 'cache' }), s3Tier(server, 'tiers')], {
          blockSize: 64 * 1024,
        }),
      ]),
  ],
];

describe('the model through any tier', () => {
  for (const [kind, make] of kinds) {
    it(`${kind}: sharded safetensors via the index, and GGUF, byte-exact`, async () => {
      const tier = await make();
      tiers.push(tier);
      const sharded = await openModel(tier, INDEX_NAME);
      expect(sharded.files).toHaveLength(model.shards.length);
      const st = await checkAll(sharded);
      expect(st).toBe(model.shards.reduce((n, s) => n + s.plan.tensors.length, 0));
      const gguf = await openModel(tier, GGUF_NAME);
      expect(gguf.files[0]!.ggufMetadata.get('general.architecture')).toBe('llama');
      expect(await checkAll(gguf)).toBe(model.gguf!.plan.tensors.length);
      // A second pass through a stack is served by its cache.
      expect(await checkAll(await openModel(tier, INDEX_NAME))).toBe(st);
    });
  }
});

describe('hostile files through S3', () => {
  it('a huge header length, a truncated file and a GGUF with impossible counts are refused after a probe', async () => {
    const s3 = s3Tier(server, 'hostile');
    const huge = new Uint8Array(1 << 20);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 62n, true);
    await s3.write('huge.safetensors', huge);
    const cut = new Uint8Array(4096);
    new DataView(cut.buffer).setBigUint64(0, 100_000n, true);
    await s3.write('cut.safetensors', cut);
    const counts = new Uint8Array(1 << 20);
    const v = new DataView(counts.buffer);
    v.setUint32(0, 0x46554747, true);
    v.setUint32(4, 3, true);
    v.setBigUint64(8, 2n ** 40n, true);
    await s3.write('counts.gguf', counts);
    const origin = withMetrics()(s3Tier(server, 'hostile')) as MetricsTier;
    const stack = createStack([new FsTier({ root: await dir(), name: 'cache' }), origin], {
      blockSize: 64 * 1024,
    });
    tiers.push(stack);
    for (const [key, reason] of [
      ['huge.safetensors', 'HEADER_TOO_LARGE'],
      ['cut.safetensors', 'TRUNCATED'],
      ['counts.gguf', 'TRUNCATED'],
    ] as const) {
      const before = origin.metrics.bytesRead;
      const err = await openModel(stack, key).catch((e) => e);
      expect(isTierError(err, 'INTEGRITY'), key).toBe(true);
      expect(err.details.reason).toBe(reason);
      // Only the first probe's blocks came from the origin.
      expect(origin.metrics.bytesRead - before).toBeLessThanOrEqual(256 * 1024);
    }
  });
});
