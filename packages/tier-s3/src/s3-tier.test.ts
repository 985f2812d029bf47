import { createHash } from 'node:crypto';
import { isTierError } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Tier, optionsFromUrl, type S3Tier, type S3TierOptions, s3TierFromUrl } from './index.js';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from './testing/index.js';

const MiB = 1024 * 1024;
let s3: LocalS3;
let n = 0;

beforeAll(async () => {
  s3 = await startLocalS3({ buckets: ['tier'] });
});
afterAll(async () => {
  await s3?.close();
});

function tier(extra: Partial<S3TierOptions> = {}): S3Tier {
  const { endpoint, credentials } = localS3ClientConfig(s3.endpoint);
  return createS3Tier({ bucket: 'tier', prefix: `t${++n}`, endpoint, credentials, ...extra });
}

function same(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && Buffer.compare(a, b) === 0;
}

async function* chunked(bytes: Uint8Array, sizes: number[]): AsyncGenerator<Uint8Array> {
  let at = 0;
  let i = 0;
  // The producer reuses one buffer: the tier must copy what it keeps.
  const scratch = new Uint8Array(Math.max(...sizes));
  while (at < bytes.byteLength) {
    const len = Math.min(sizes[i++ % sizes.length]!, bytes.byteLength - at);
    scratch.set(bytes.subarray(at, at + len));
    yield scratch.subarray(0, len);
    at += len;
  }
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('streamed uploads are byte-exact', () => {
  it('small stream (one PutObject)', async () => {
    const t = tier();
    const data = patternBytes(300_001, 5);
    const meta = await t.write('small', chunked(data, [1, 4096, 65_537]));
    expect(meta.size).toBe(data.byteLength);
    expect(meta.etag).toBeTruthy();
    expect(same(await t.read('small'), data)).toBe(true);
    await t.close();
  });

  it('20 MiB stream as a multipart upload with 5 MiB parts', async () => {
    const t = tier({ multipartThreshold: 5 * MiB, uploadPartSize: 5 * MiB, uploadConcurrency: 3 });
    const data = patternBytes(20 * MiB + 17, 6);
    const meta = await t.write('big', chunked(data, [777_777, 1 * MiB, 13]), { size: data.byteLength });
    expect(meta.size).toBe(data.byteLength);
    expect((await t.stat('big'))?.size).toBe(data.byteLength);
    const back = await t.read('big');
    expect(createHash('sha256').update(back!).digest('hex')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
    await t.close();
  });

  it('a Uint8Array above the threshold goes multipart, byte-exact', async () => {
    const t = tier({ multipartThreshold: 5 * MiB, uploadPartSize: 5 * MiB });
    const data = patternBytes(11 * MiB + 1, 7);
    await t.write('array', data);
    expect(same(await t.read('array'), data)).toBe(true);
    await t.close();
  });

  it('a declared size mismatch is INTEGRITY and publishes nothing (single and multipart)', async () => {
    const t = tier({ multipartThreshold: 5 * MiB, uploadPartSize: 5 * MiB });
    const data = patternBytes(12 * MiB, 8);
    const short = await caught(t.write('mismatch', chunked(data, [MiB]), { size: data.byteLength + 1 }));
    expect(isTierError(short, 'INTEGRITY')).toBe(true);
    const long = await caught(t.write('mismatch', chunked(data, [MiB]), { size: data.byteLength - 1 }));
    expect(isTierError(long, 'INTEGRITY')).toBe(true);
    const small = await caught(t.write('mismatch', chunked(data.subarray(0, 100), [10]), { size: 99 }));
    expect(isTierError(small, 'INTEGRITY')).toBe(true);
    expect(await t.stat('mismatch')).toBeUndefined();
    await t.close();
  });
});

describe('parallel ranged reads', () => {
  const data = patternBytes(3 * MiB + 12_345, 9);
  let t: S3Tier;
  beforeAll(async () => {
    // Small parts and no adaptation: every read above 64 KiB is many parallel GETs.
    t = tier({ partSize: 64 * 1024, concurrency: 8, adaptive: false, maxBytesInFlight: 256 * 1024 });
    await t.write('obj', data);
  });
  afterAll(() => t.close());

  it('read, readInto and readStream are byte-exact at many ranges', async () => {
    expect(same(await t.read('obj'), data)).toBe(true);
    for (const [offset, length] of [
      [0, 1],
      [1, 64 * 1024],
      [65_535, 200_003],
      [MiB - 7, MiB + 14],
      [data.byteLength - 100_000, 100_000],
    ] as const) {
      const want = data.subarray(offset, offset + length);
      expect(same(await t.read('obj', { range: { offset, length } }), want), `read ${offset}+${length}`).toBe(
        true,
      );
      const target = new Uint8Array(length + 10).fill(0xee);
      expect(await t.readInto('obj', target.subarray(5, 5 + length), { offset })).toBe(length);
      expect(same(target.subarray(5, 5 + length), want)).toBe(true);
      expect(target[4]).toBe(0xee);
      expect(target[5 + length]).toBe(0xee);
      const stream = await t.readStream('obj', { range: { offset, length } });
      expect(same(await collect(stream!), want), `stream ${offset}+${length}`).toBe(true);
    }
  });

  it('keeps bytes in flight under maxBytesInFlight across parallel reads', async () => {
    let inFlight = 0;
    let peak = 0;
    t.testHooks = {
      beforePart: async ({ length }) => {
        inFlight += length;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 2));
        inFlight -= length;
      },
    };
    try {
      const reads = await Promise.all([t.read('obj'), t.read('obj'), collect((await t.readStream('obj'))!)]);
      for (const r of reads) expect(same(r, data)).toBe(true);
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(256 * 1024);
    } finally {
      t.testHooks = {};
    }
  });

  it('an object overwritten between parts is CHANGED, never stitched', async () => {
    const w = tier({ partSize: 64 * 1024, adaptive: false });
    const v1 = patternBytes(512 * 1024, 1);
    const v2 = patternBytes(512 * 1024, 2);
    await w.write('moving', v1);
    let swapped = false;
    w.testHooks = {
      beforePart: async () => {
        if (swapped) return;
        swapped = true;
        await w.write('moving', v2);
      },
    };
    expect(isTierError(await caught(w.read('moving')), 'CHANGED')).toBe(true);
    swapped = false;
    w.testHooks.beforePart = async () => {
      if (swapped) return;
      swapped = true;
      await w.write('moving', v1);
    };
    expect(isTierError(await caught(w.readInto('moving', new Uint8Array(v1.byteLength))), 'CHANGED')).toBe(
      true,
    );
    swapped = false;
    w.testHooks.beforePart = async () => {
      if (swapped) return;
      swapped = true;
      await w.write('moving', v2);
    };
    const stream = await w.readStream('moving');
    expect(isTierError(await caught(collect(stream!)), 'CHANGED')).toBe(true);
    w.testHooks = {};
    expect(same(await w.read('moving'), v2)).toBe(true);
    await w.close();
  });

  it('aborts a multi-part read with ABORTED', async () => {
    const ac = new AbortController();
    t.testHooks = { beforePart: () => ac.abort() };
    try {
      expect(isTierError(await caught(t.read('obj', { signal: ac.signal })), 'ABORTED')).toBe(true);
    } finally {
      t.testHooks = {};
    }
    expect(same(await t.read('obj'), data)).toBe(true);
  });
});

describe('list', () => {
  it('pages with a small page size, sorted, prefix stripped', async () => {
    const t = tier({ listPageSize: 2 });
    const keys = ['a/1', 'a/2', 'a/3', 'b', 'c/d/e', 'c/f', 'zz'];
    for (const k of [...keys].reverse()) await t.write(k, new TextEncoder().encode(k));
    const seen: string[] = [];
    for await (const m of t.list()) {
      seen.push(m.key);
      expect(m.size).toBe(m.key.length);
      expect(m.etag).toBeTruthy();
    }
    expect(seen).toEqual(keys);
    const inA: string[] = [];
    for await (const m of t.list('a/')) inA.push(m.key);
    expect(inA).toEqual(['a/1', 'a/2', 'a/3']);
    await t.close();
  });
});

describe('configuration', () => {
  it('validates options with INVALID_ARGUMENT and a clear message', () => {
    const bad: Partial<S3TierOptions>[] = [
      { bucket: 'x' },
      { bucket: 'ok-bucket', partSize: 0 },
      { bucket: 'ok-bucket', concurrency: 0 },
      { bucket: 'ok-bucket', uploadPartSize: 1024 },
      { bucket: 'ok-bucket', endpoint: 'ftp://host' },
      { bucket: 'ok-bucket', prefix: 'a/../b' },
      { bucket: 'ok-bucket', listPageSize: 5000 },
      { bucket: 'ok-bucket', requestChecksumCalculation: 'ALWAYS' as never },
      { bucket: 'ok-bucket', partSize: 8 * MiB, maxBytesInFlight: MiB },
    ];
    for (const o of bad) {
      let err: unknown;
      try {
        createS3Tier(o as S3TierOptions);
      } catch (e) {
        err = e;
      }
      expect(isTierError(err, 'INVALID_ARGUMENT'), JSON.stringify(o)).toBe(true);
      expect((err as Error).message).toMatch(/^S3 tier: /);
    }
  });

  it('resolves defaults once: WHEN_REQUIRED checksums and path style for an endpoint', () => {
    const t = createS3Tier({ bucket: 'models', endpoint: 'http://127.0.0.1:9000/', region: 'eu-west-1' });
    expect(t.config).toMatchObject({
      bucket: 'models',
      prefix: '',
      endpoint: 'http://127.0.0.1:9000',
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      partSize: 8 * MiB,
      concurrency: 16,
    });
    expect(JSON.parse(JSON.stringify(t.config))).toEqual(t.config);
    const aws = createS3Tier({ bucket: 'models', region: 'us-east-1' });
    expect(aws.config.requestChecksumCalculation).toBeUndefined();
    expect(aws.config.forcePathStyle).toBe(false);
    const custom = createS3Tier({
      bucket: 'models',
      endpoint: 'http://h:1',
      requestChecksumCalculation: 'WHEN_SUPPORTED',
    });
    expect(custom.config.requestChecksumCalculation).toBe('WHEN_SUPPORTED');
  });

  it('builds from s3:// URLs', async () => {
    expect(
      optionsFromUrl('s3://bucket-a/models/llama?region=eu-west-1&partSize=1048576&forcePathStyle=true'),
    ).toEqual({
      bucket: 'bucket-a',
      prefix: 'models/llama',
      region: 'eu-west-1',
      partSize: 1048576,
      forcePathStyle: true,
    });
    expect(() => optionsFromUrl('http://x/y')).toThrow(/s3:\/\//);
    expect(() => optionsFromUrl('s3://bucket-a/?bogus=1')).toThrow(/bogus/);
    const { endpoint, credentials } = localS3ClientConfig(s3.endpoint);
    const t = s3TierFromUrl(`s3://tier/url-made?endpoint=${encodeURIComponent(endpoint)}`, { credentials });
    expect(t.config.prefix).toBe('url-made/');
    await t.write('k', new Uint8Array([1, 2, 3]));
    expect([...(await t.read('k'))!]).toEqual([1, 2, 3]);
    await t.close();
  });

  it('maps a missing bucket and bad credentials to UNAVAILABLE, not retryable, saying what to check', async () => {
    const { endpoint, credentials } = localS3ClientConfig(s3.endpoint);
    const missing = createS3Tier({ bucket: 'no-such-bucket', endpoint, credentials });
    const e1 = await caught(missing.write('k', new Uint8Array(1)));
    expect(isTierError(e1, 'UNAVAILABLE')).toBe(true);
    expect((e1 as { retryable: boolean }).retryable).toBe(false);
    expect((e1 as Error).message).toMatch(/bucket/);
    const e2 = await caught(missing.read('k'));
    expect(isTierError(e2, 'UNAVAILABLE')).toBe(true);
    await missing.close();
    const wrong = createS3Tier({
      bucket: 'tier',
      endpoint,
      credentials: { accessKeyId: 'NOPE', secretAccessKey: 'nope' },
    });
    const e3 = await caught(wrong.read('k'));
    expect(isTierError(e3, 'UNAVAILABLE')).toBe(true);
    expect((e3 as { retryable: boolean }).retryable).toBe(false);
    expect((e3 as Error).message).toMatch(/credentials/);
    await wrong.close();
  });

  it('maps an unreachable server to retryable UNAVAILABLE after bounded retries', async () => {
    const t = createS3Tier({
      bucket: 'tier',
      endpoint: 'http://127.0.0.1:9',
      credentials: localS3ClientConfig(s3.endpoint).credentials,
      retry: { attempts: 2, baseDelayMs: 1 },
    });
    const err = await caught(t.stat('k'));
    expect(isTierError(err, 'UNAVAILABLE')).toBe(true);
    expect((err as { retryable: boolean }).retryable).toBe(true);
    await t.close();
  });
});
