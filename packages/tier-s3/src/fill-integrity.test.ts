/**
 * Fills through [fs cache over s3] checked end to end against what the origin
 * states: s3rver's MD5 ETags; S3's multipart ETags `md5(part md5s)-N` with the
 * part size from a HEAD of part 1, and its stored checksums (x-amz-checksum-*,
 * FULL_OBJECT and COMPOSITE), as the checksum proxy emulates them (s3rver keeps
 * no checksums and gives multipart uploads the MD5 of their bytes). A byte flipped in transit makes the fill fetch again and publish the
 * object byte-exact; flipped for good, the read fails with INTEGRITY and
 * nothing is cached. Over http and https, with direct GETs and through the SDK.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createStack,
  isTierError,
  type ObjectDigest,
  type StackTier,
  type TierError,
} from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { FsTier } from '@tierkit/tier-fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChecksumProxy, type ChecksumRule, startChecksumProxy } from './checksum-proxy.js';
import { S3Tier, type S3TierOptions } from './index.js';
import { makeCert, type TestCert } from './test-servers.js';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from './testing/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const PART = 5 * MiB;
// Bigger than a fill's 8 MiB piece: the fill's own check, not the S3 tier's whole-read one, is what runs.
const single = patternBytes(9 * MiB + 7, 1);
const multi = patternBytes(2 * PART + 3 * KiB + 1, 2);
const small = patternBytes(700 * KiB + 3, 3);
let s3: LocalS3;
let cert: TestCert | undefined;
const proxies: Record<string, ChecksumProxy> = {};
const dirs: string[] = [];
const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

beforeAll(async () => {
  s3 = await startLocalS3({ buckets: ['fills'] });
  const { endpoint, credentials } = localS3ClientConfig(s3.endpoint);
  const w = new S3Tier({ bucket: 'fills', endpoint, credentials, multipartThreshold: 64 * MiB });
  await w.write('single', single);
  await w.write('small', small);
  await w.close();
  const m = new S3Tier({
    bucket: 'fills',
    endpoint,
    credentials,
    multipartThreshold: 0,
    uploadPartSize: PART,
  });
  await m.write('multi', multi);
  await m.close();
  proxies.http = await startChecksumProxy(s3.endpoint);
  cert = await makeCert();
  if (cert) proxies.https = await startChecksumProxy(s3.endpoint, cert);
});
afterAll(async () => {
  for (const p of Object.values(proxies)) await p.close();
  await s3?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function stackOver(proxy: ChecksumProxy, directGets: boolean, extra: Partial<S3TierOptions> = {}) {
  const root = await mkdtemp(join(tmpdir(), 'tierkit-fill-integrity-'));
  dirs.push(root);
  const cache = new FsTier({ root, name: 'cache' });
  const origin = new S3Tier({
    name: 's3',
    bucket: 'fills',
    endpoint: proxy.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: localS3ClientConfig(s3.endpoint).credentials,
    directGets,
    partSize: 1 * MiB,
    retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2 },
    ...(cert ? { ca: cert.cert } : {}),
    ...extra,
  });
  const stack: StackTier = createStack([cache, origin], { blockSize: 512 * KiB, spanBytes: 2 * MiB });
  return { cache, origin, stack };
}

function expectIntegrity(err: unknown): TierError {
  expect(isTierError(err), String(err)).toBe(true);
  expect((err as TierError).code, (err as Error).message).toBe('INTEGRITY');
  return err as TierError;
}

async function sourceDigests(cache: FsTier, key: string): Promise<readonly ObjectDigest[] | undefined> {
  return (await cache.stat(key))?.source?.digests;
}

const CASES = [
  ['http', true],
  ['http', false],
  ['https', true],
  ['https', false],
] as const;

describe.each(CASES)('fill integrity over %s (directGets: %s)', (scheme, directGets) => {
  const skip = () =>
    proxies[scheme] ? undefined : 'skipped: openssl is not installed, no certificate for TLS';

  it('single-part: checked against the MD5 ETag; a flipped byte is fetched again, the copy byte-exact', async (ctx) => {
    if (skip()) return ctx.skip(skip());
    const proxy = proxies[scheme]!;
    proxy.set('fills/single', undefined);
    const { cache, stack } = await stackOver(proxy, directGets);
    const flips = proxy.stats.flips;
    proxy.flipGets(1);
    expect(same(await stack.read('single'), single)).toBe(true);
    expect(proxy.stats.flips - flips).toBe(1);
    expect(await sourceDigests(cache, 'single')).toEqual([
      { algorithm: 'md5', value: expect.stringMatching(/^[0-9a-f]{32}$/), from: 'etag' },
    ]);
    expect(same(await cache.read('single'), single)).toBe(true);
    await stack.close();
  });

  it('an object one GET covers is hashed once: by the fill, not again by the S3 tier; direct reads keep its check', async (ctx) => {
    if (skip()) return ctx.skip(skip());
    const proxy = proxies[scheme]!;
    proxy.set('fills/small', undefined);
    const { cache, origin, stack } = await stackOver(proxy, directGets);
    const s3Checks: string[] = [];
    origin.testHooks = { beforeMd5Check: ({ key }) => s3Checks.push(key) };
    const flips = proxy.stats.flips;
    proxy.flipGets(1);
    // The flipped first GET is caught by the fill's own check and fetched again.
    expect(same(await stack.read('small'), small)).toBe(true);
    expect(proxy.stats.flips - flips).toBe(1);
    expect(await sourceDigests(cache, 'small')).toEqual([
      { algorithm: 'md5', value: expect.stringMatching(/^[0-9a-f]{32}$/), from: 'etag' },
    ]);
    expect(s3Checks).toEqual([]);
    // A caller of the S3 tier itself still gets the tier's check, and one a caller waives is skipped.
    expect(same(await origin.read('small'), small)).toBe(true);
    const into = new Uint8Array(small.byteLength);
    expect(await origin.readInto('small', into)).toBe(small.byteLength);
    expect(s3Checks).toEqual(['small', 'small']);
    expect(await origin.readInto('small', into, { callerVerifies: true })).toBe(small.byteLength);
    expect(s3Checks).toHaveLength(2);
    await stack.close();
  });

  it('flipped on every GET: INTEGRITY, never served whole, nothing cached', async (ctx) => {
    if (skip()) return ctx.skip(skip());
    const proxy = proxies[scheme]!;
    proxy.set('fills/single', undefined);
    const { cache, stack } = await stackOver(proxy, directGets);
    proxy.flipGets(1_000);
    const err = expectIntegrity(await stack.read('single').catch((e: unknown) => e));
    expect(err.details).toMatchObject({ algorithm: 'md5', from: 'etag', restartable: true });
    expect(await cache.stat('single')).toBeUndefined();
    proxy.flipGets(0);
    expect(same(await stack.read('single'), single)).toBe(true);
    await stack.close();
  });

  it('each stored checksum (FULL_OBJECT) is what the fill checks, ahead of the ETag; a wrong one fails', async (ctx) => {
    if (skip()) return ctx.skip(skip());
    const proxy = proxies[scheme]!;
    const algorithms: ChecksumRule['algorithm'][] = ['crc64nvme', 'crc32c', 'crc32', 'sha1', 'sha256'];
    for (const algorithm of algorithms) {
      proxy.set('fills/small', { bytes: small, checksum: { algorithm } });
      const { cache, stack } = await stackOver(proxy, directGets);
      expect(same(await stack.read('small'), small)).toBe(true);
      expect((await sourceDigests(cache, 'small'))?.[0]).toMatchObject({ algorithm, from: 'checksum' });
      await stack.close();
    }
    for (const algorithm of algorithms) {
      // What a store with a corrupt copy would state: the checksum of other bytes.
      const value = Buffer.alloc(
        algorithm === 'crc64nvme' ? 8 : algorithm.startsWith('crc') ? 4 : algorithm === 'sha1' ? 20 : 32,
        7,
      );
      proxy.set('fills/small', { bytes: small, checksum: { algorithm, value: value.toString('base64') } });
      const { cache, stack } = await stackOver(proxy, directGets);
      const err = expectIntegrity(await stack.read('small').catch((e: unknown) => e));
      expect(err.details).toMatchObject({ algorithm, expected: value.toString('hex'), from: 'checksum' });
      expect(await cache.stat('small')).toBeUndefined();
      await stack.close();
    }
    proxy.set('fills/small', undefined);
  });
});

// Multipart objects are bigger: one GET path per scheme, crossed (direct over http, the SDK over https).
describe.each([
  ['http', true],
  ['https', false],
] as const)('multipart fill integrity over %s (directGets: %s)', (scheme, directGets) => {
  const skip = () =>
    proxies[scheme] ? undefined : 'skipped: openssl is not installed, no certificate for TLS';

  it('multipart: the part size from a HEAD of part 1 makes its ETag checkable', async (ctx) => {
    if (skip()) return ctx.skip(skip());
    const proxy = proxies[scheme]!;
    proxy.set('fills/multi', { bytes: multi, partSize: PART, multipartEtag: true });
    const { cache, stack } = await stackOver(proxy, directGets);
    const partHeads = proxy.stats.partHeads;
    proxy.flipGets(1);
    expect(same(await stack.read('multi'), multi)).toBe(true);
    expect(proxy.stats.partHeads - partHeads).toBe(1);
    expect((await sourceDigests(cache, 'multi'))?.[0]).toMatchObject({
      algorithm: 'md5',
      parts: 3,
      from: 'etag',
    });
    expect(same(await cache.read('multi'), multi)).toBe(true);
    await stack.close();
  });

  it('a COMPOSITE crc32c of a multipart object is checked per part', async (ctx) => {
    if (skip()) return ctx.skip(skip());
    const proxy = proxies[scheme]!;
    proxy.set('fills/multi', {
      bytes: multi,
      partSize: PART,
      multipartEtag: true,
      checksum: { algorithm: 'crc32c', type: 'COMPOSITE' },
    });
    const { cache, stack } = await stackOver(proxy, directGets);
    proxy.flipGets(1);
    expect(same(await stack.read('multi'), multi)).toBe(true);
    expect((await sourceDigests(cache, 'multi'))?.[0]).toMatchObject({
      algorithm: 'crc32c',
      parts: 3,
      from: 'checksum',
    });
    await stack.close();
  });
});

describe('what S3 states, and what is left unverified', () => {
  it('a server that ignores partNumber: a multipart ETag cannot be checked; the copy is published unverified', async () => {
    const proxy = proxies.http!;
    proxy.set('fills/multi', { bytes: multi, partSize: PART, multipartEtag: true, partHeads: false });
    const { cache, origin, stack } = await stackOver(proxy, true);
    expect((await origin.stat('multi'))?.digests).toEqual([
      { algorithm: 'md5', value: expect.stringMatching(/^[0-9a-f]{32}$/), parts: 3, from: 'etag' },
    ]);
    expect(
      await origin.resolveDigest('multi', (await origin.stat('multi'))!.digests![0]!, {
        size: multi.byteLength,
      }),
    ).toBeUndefined();
    expect(same(await stack.read('multi'), multi)).toBe(true);
    expect(same(await cache.read('multi'), multi)).toBe(true);
    proxy.set('fills/multi', undefined);
    await stack.close();
  });

  it('verify: false and etagDigests: false state nothing; the fill publishes what arrived, unverified', async () => {
    const proxy = proxies.http!;
    for (const extra of [{ verify: false }, { etagDigests: false }]) {
      const { cache, origin, stack } = await stackOver(proxy, true, extra);
      expect((await origin.stat('single'))?.digests).toBeUndefined();
      proxy.flipGets(1);
      const got = await stack.read('single');
      expect(got?.byteLength).toBe(single.byteLength);
      expect(same(got, single)).toBe(false);
      expect(await sourceDigests(cache, 'single')).toBeUndefined();
      await stack.close();
    }
  });
});
