/**
 * The main job's stack, [fs cache over S3], against a real S3 server: the
 * conformance suite, block-granular fills, and reads through injected faults.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStack, isTierError, type MetricsTier, withMetrics } from '@tierkit/tier-core';
import { patternBytes, runTierConformance } from '@tierkit/tier-core/testing';
import { FsTier } from '@tierkit/tier-fs';
import * as vitest from 'vitest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Tier, type S3TierOptions } from './index.js';
import {
  type FaultProxy,
  type LocalS3,
  localS3ClientConfig,
  startFaultProxy,
  startLocalS3,
} from './testing/index.js';

const KiB = 1024;
/** Byte equality without vitest's element-by-element diffing, which crawls on MiB arrays. */
const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined &&
  Buffer.compare(
    Buffer.from(a.buffer, a.byteOffset, a.byteLength),
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  ) === 0;
let s3: LocalS3;
let proxy: FaultProxy;
let n = 0;
const dirs: string[] = [];

beforeAll(async () => {
  s3 = await startLocalS3({ buckets: ['stack'] });
  proxy = await startFaultProxy({ target: s3.endpoint });
});
afterAll(async () => {
  await proxy?.close();
  await s3?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function s3Tier(prefix: string, extra: Partial<S3TierOptions> = {}): S3Tier {
  const { endpoint, credentials } = localS3ClientConfig(s3.endpoint);
  return new S3Tier({ name: 's3', bucket: 'stack', prefix, endpoint, credentials, ...extra });
}

async function cacheDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'tierkit-s3-stack-'));
  dirs.push(d);
  return d;
}

runTierConformance(vitest, {
  name: 'stack [fs over s3]',
  create: async () => {
    const root = await cacheDir();
    const tier = createStack([new FsTier({ root, name: 'cache' }), s3Tier(`conf-${process.pid}-${++n}`)], {
      blockSize: 256 * KiB,
    });
    return { tier };
  },
});

describe('[fs over s3] read-through', () => {
  it('fills block by block: a range fetches its blocks, a whole read only the rest, the next read nothing', async () => {
    const prefix = `blocks-${++n}`;
    const bytes = patternBytes(3 * 1024 * KiB + 5, 3);
    await s3Tier(prefix).write('model.safetensors', bytes);
    const origin = withMetrics()(s3Tier(prefix)) as MetricsTier;
    const stack = createStack([new FsTier({ root: await cacheDir(), name: 'cache' }), origin], {
      blockSize: 256 * KiB,
    });
    const head = await stack.read('model.safetensors', { range: { offset: 0, length: 8 } });
    expect(head).toEqual(bytes.subarray(0, 8));
    expect(origin.metrics.bytesRead).toBe(256 * KiB);
    const target = new Uint8Array(bytes.byteLength);
    expect(await stack.readInto('model.safetensors', target)).toBe(bytes.byteLength);
    expect(same(target, bytes)).toBe(true);
    expect(origin.metrics.bytesRead).toBe(bytes.byteLength);
    expect(same(await stack.read('model.safetensors'), bytes)).toBe(true);
    expect(origin.metrics.bytesRead).toBe(bytes.byteLength);
    await stack.close();
  });

  it('through 5xx, dropped connections and truncated bodies: the origin bytes or a typed error, always finishing', async () => {
    const prefix = `faults-${++n}`;
    const objects = [patternBytes(900 * KiB + 1, 1), patternBytes(2 * 1024 * KiB + 7, 2), patternBytes(5, 3)];
    const direct = s3Tier(prefix);
    for (const [i, o] of objects.entries()) await direct.write(`o${i}`, o);
    await direct.close();
    proxy.setPlan({
      seed: 11,
      status500: 0.05,
      status503: 0.05,
      drop: 0.05,
      truncate: 0.1,
      methods: ['GET', 'HEAD'],
    });
    const { credentials } = localS3ClientConfig(s3.endpoint);
    let ok = 0;
    let typed = 0;
    for (let round = 0; round < 6; round++) {
      const origin = new S3Tier({
        name: 's3',
        bucket: 'stack',
        prefix,
        endpoint: proxy.endpoint,
        credentials,
        partSize: 128 * KiB,
        adaptive: false,
        retry: { attempts: 8, baseDelayMs: 2, maxDelayMs: 30 },
        requestTimeoutMs: 5000,
      });
      const stack = createStack([new FsTier({ root: await cacheDir(), name: 'cache' }), origin], {
        blockSize: 256 * KiB,
      });
      const reads = objects.flatMap((o, i) => [
        stack.read(`o${i}`).then((got) => ({ got, want: o })),
        stack
          .read(`o${i}`, { range: { offset: 1, length: o.byteLength - 2 } })
          .then((got) => ({ got, want: o.subarray(1, o.byteLength - 1) })),
      ]);
      for (const r of await Promise.allSettled(reads)) {
        if (r.status === 'fulfilled') {
          expect(same(r.value.got, r.value.want)).toBe(true);
          ok++;
        } else {
          expect(isTierError(r.reason), String(r.reason)).toBe(true);
          typed++;
        }
      }
      // What the cache kept is the origin's: read it again with the faults off.
      proxy.setPlan(undefined);
      for (const [i, o] of objects.entries()) expect(same(await stack.read(`o${i}`), o)).toBe(true);
      proxy.setPlan({
        seed: 11 + round,
        status500: 0.05,
        status503: 0.05,
        drop: 0.05,
        truncate: 0.1,
        methods: ['GET', 'HEAD'],
      });
      await stack.close();
    }
    proxy.setPlan(undefined);
    expect(ok).toBeGreaterThan(typed);
    expect(proxy.stats.faults.truncate + proxy.stats.faults.drop).toBeGreaterThan(0);
  }, 120_000);
});
