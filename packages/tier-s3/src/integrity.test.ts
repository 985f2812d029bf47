/**
 * A proxy that flips a byte of GET bodies in transit, in front of s3rver: a
 * read of a whole single-part object is checked against its MD5 ETag, reads
 * again on a mismatch, and fails with INTEGRITY when every read is wrong —
 * never served, and through a stack never cached.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStack, isTierError, type TierError } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { FsTier } from '@tierkit/tier-fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { S3Tier, type S3TierOptions } from './index.js';
import {
  type FaultProxy,
  type LocalS3,
  localS3ClientConfig,
  startFaultProxy,
  startLocalS3,
} from './testing/index.js';

const KiB = 1024;
const small = patternBytes(100 * KiB + 7, 1);
const mid = patternBytes(3 * 1024 * KiB + 1, 2);
let s3: LocalS3;
let proxy: FaultProxy;
const dirs: string[] = [];
const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

beforeAll(async () => {
  s3 = await startLocalS3({ buckets: ['integrity'] });
  proxy = await startFaultProxy({ target: s3.endpoint });
  const { endpoint, credentials } = localS3ClientConfig(s3.endpoint);
  const t = new S3Tier({ bucket: 'integrity', endpoint, credentials, multipartThreshold: 64 * 1024 * KiB });
  await t.write('small', small);
  await t.write('mid', mid);
  // A multipart upload: its ETag is no digest of the bytes.
  await new S3Tier({
    bucket: 'integrity',
    endpoint,
    credentials,
    multipartThreshold: 0,
    uploadPartSize: 5 * 1024 * KiB,
  }).write('multi', mid);
  await t.close();
});
afterEach(() => proxy.setPlan(undefined));
afterAll(async () => {
  await proxy?.close();
  await s3?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Flips a byte in the body of the next `n` GETs. */
function flipGets(n: number): void {
  let left = n;
  proxy.setPlan((req) => (req.method === 'GET' && left-- > 0 ? { kind: 'flip' } : undefined));
}

function tier(directGets: boolean, extra: Partial<S3TierOptions> = {}): S3Tier {
  const { credentials } = localS3ClientConfig(s3.endpoint);
  return new S3Tier({
    name: 's3',
    bucket: 'integrity',
    endpoint: proxy.endpoint,
    credentials,
    directGets,
    partSize: 256 * KiB,
    retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
    ...extra,
  });
}

async function collect(s: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

function expectIntegrity(err: unknown): void {
  expect(isTierError(err), String(err)).toBe(true);
  expect((err as TierError).code, (err as Error).message).toBe('INTEGRITY');
  expect((err as TierError).retryable).toBe(false);
}

describe.each([true, false])('end-to-end integrity (directGets: %s)', (directGets) => {
  it('a byte flipped in transit is caught: the read fetches again and returns the object byte-exact', async () => {
    const t = tier(directGets);
    const before = proxy.stats.faults.flip;
    flipGets(1);
    expect(same(await t.read('small'), small)).toBe(true);
    flipGets(1);
    expect(same(await t.read('mid'), mid)).toBe(true); // a multi-part read: one part was flipped
    flipGets(1);
    const target = new Uint8Array(mid.byteLength);
    expect(await t.readInto('mid', target)).toBe(mid.byteLength);
    expect(same(target, mid)).toBe(true);
    expect(proxy.stats.faults.flip - before).toBe(3);
    await t.close();
  });

  it('when every read is flipped: INTEGRITY, never the bytes', async () => {
    const t = tier(directGets);
    flipGets(1000);
    expectIntegrity(await t.read('small').catch((e: unknown) => e));
    expectIntegrity(await t.readInto('mid', new Uint8Array(mid.byteLength)).catch((e: unknown) => e));
    // A stream's bytes are out before the end: the stream fails instead of ending.
    expectIntegrity(await collect((await t.readStream('mid'))!).catch((e: unknown) => e));
    await t.close();
  });

  it('verify: false serves what arrived (what the check is there for)', async () => {
    const t = tier(directGets, { verify: false });
    flipGets(1);
    const got = await t.read('small');
    expect(got?.byteLength).toBe(small.byteLength);
    expect(same(got, small)).toBe(false);
    await t.close();
  });

  it('a multipart object (its ETag is no MD5) is read unchecked, and whole', async () => {
    const t = tier(directGets);
    expect(same(await t.read('multi'), mid)).toBe(true);
    await t.close();
  });

  it('through [fs cache over s3]: a flipped fill is fetched again; flipped for good, nothing is cached', async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-s3-integrity-'));
    dirs.push(root);
    const cache = new FsTier({ root, name: 'cache' });
    const stack = createStack([cache, tier(directGets)], { blockSize: 256 * KiB });
    flipGets(1000);
    expectIntegrity(await stack.read('mid').catch((e: unknown) => e));
    expect(await cache.stat('mid')).toBeUndefined();
    flipGets(1);
    expect(same(await stack.read('mid'), mid)).toBe(true);
    expect(same(await cache.read('mid'), mid)).toBe(true);
    await stack.close();
  });
});
