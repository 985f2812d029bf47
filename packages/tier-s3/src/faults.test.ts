import { isTierError } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Tier, type S3TierOptions } from './index.js';
import {
  type FaultProxy,
  type LocalS3,
  localS3ClientConfig,
  startFaultProxy,
  startLocalS3,
  startShapingProxy,
} from './testing/index.js';

const KiB = 1024;
let origin: LocalS3;
let proxy: FaultProxy;
let direct: S3Tier;

function viaProxy(extra: Partial<S3TierOptions> = {}): S3Tier {
  const { credentials } = localS3ClientConfig(origin.endpoint);
  return new S3Tier({
    bucket: 'faults',
    endpoint: proxy.endpoint,
    credentials,
    partSize: 64 * KiB,
    concurrency: 4,
    adaptive: false,
    retry: { attempts: 10, baseDelayMs: 2, maxDelayMs: 40 },
    requestTimeoutMs: 5000,
    ...extra,
  });
}

const objects = new Map<string, Uint8Array>([
  ['tiny', patternBytes(10, 1)],
  ['one-part', patternBytes(60 * KiB, 2)],
  ['multi', patternBytes(700 * KiB + 3, 3)],
  ['bigger', patternBytes(1536 * KiB + 11, 4)],
]);

beforeAll(async () => {
  origin = await startLocalS3({ buckets: ['faults'] });
  proxy = await startFaultProxy({ target: origin.endpoint });
  const { endpoint, credentials } = localS3ClientConfig(origin.endpoint);
  direct = new S3Tier({ bucket: 'faults', endpoint, credentials });
  for (const [k, v] of objects) await direct.write(k, v);
});
afterAll(async () => {
  await direct?.close();
  await proxy?.close();
  await origin?.close();
});

function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

// Both GET paths: tierkit's direct sockets (the default for an http: endpoint) and the SDK's.
describe.each([true, false])('reads through injected faults (directGets: %s)', (directGets) => {
  it('return exactly the origin bytes or a typed TierError, and all finish', async () => {
    proxy.setPlan({
      seed: 7,
      status500: 0.04,
      status503: 0.04,
      drop: 0.06,
      truncate: 0.1,
      methods: ['GET', 'HEAD'],
    });
    const before = structuredClone(proxy.stats);
    const t = viaProxy({ directGets });
    expect(t.directGets).toBe(directGets);
    const rnd = prng(42);
    const keys = [...objects.keys()];
    let ok = 0;
    let typed = 0;
    const run = async (i: number) => {
      const key = keys[i % keys.length]!;
      const data = objects.get(key)!;
      const offset = Math.floor(rnd() * data.byteLength);
      const length = Math.floor(rnd() * (data.byteLength - offset));
      const kind = i % 5;
      try {
        if (kind === 0) {
          const got = await t.read(key);
          expect(Buffer.compare(got!, data), `read ${key}`).toBe(0);
        } else if (kind === 1) {
          const got = await t.read(key, { range: { offset, length } });
          expect(Buffer.compare(got!, data.subarray(offset, offset + length)), `range ${key}`).toBe(0);
        } else if (kind === 2) {
          const target = new Uint8Array(data.byteLength);
          expect(await t.readInto(key, target)).toBe(data.byteLength);
          expect(Buffer.compare(target, data), `readInto ${key}`).toBe(0);
        } else if (kind === 3) {
          const got = await collect((await t.readStream(key))!);
          expect(Buffer.compare(got, data), `stream ${key}`).toBe(0);
        } else {
          expect((await t.stat(key))?.size).toBe(data.byteLength);
        }
        ok++;
      } catch (err) {
        // Anything but a typed error (a wrong byte included) fails the test.
        if (!isTierError(err)) throw err;
        typed++;
      }
    };
    const started = Date.now();
    const batch = 8;
    for (let i = 0; i < 120; i += batch) {
      await Promise.all(Array.from({ length: batch }, (_, j) => run(i + j)));
    }
    // The faults did not push the direct path back to the SDK: it is what was tested.
    expect(t.directGets).toBe(directGets);
    await t.close();
    proxy.setPlan(undefined);
    const f = proxy.stats.faults;
    const injected = {
      status: f.status - before.faults.status,
      drop: f.drop - before.faults.drop,
      truncate: f.truncate - before.faults.truncate,
    };
    expect(injected.status).toBeGreaterThan(5);
    expect(injected.drop).toBeGreaterThan(5);
    expect(injected.truncate).toBeGreaterThan(5);
    expect(Date.now() - started).toBeLessThan(60_000);
    // Retries absorb this fault rate: nearly every read succeeds.
    expect(ok).toBeGreaterThan(110);
    expect(ok + typed).toBe(120);
  }, 90_000);

  it('gives up after bounded attempts with a retryable UNAVAILABLE when every request fails', async () => {
    proxy.setPlan(() => ({ kind: 'status', status: 503, code: 'SlowDown' }));
    const t = viaProxy({ directGets, retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 } });
    try {
      await t.read('multi');
      expect.unreachable();
    } catch (err) {
      expect(isTierError(err, 'UNAVAILABLE')).toBe(true);
      expect((err as { retryable: boolean }).retryable).toBe(true);
    } finally {
      proxy.setPlan(undefined);
      await t.close();
    }
  });

  it('a truncated body is never data, even with no retries left', async () => {
    proxy.setPlan((req) => (req.method === 'GET' ? { kind: 'truncate', fraction: 0.5 } : undefined));
    const t = viaProxy({ directGets, retry: { attempts: 1 } });
    try {
      for (const key of ['one-part', 'multi']) {
        const err = await t.read(key).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(isTierError(err), key).toBe(true);
        expect((err as { retryable: boolean }).retryable).toBe(true);
      }
    } finally {
      proxy.setPlan(undefined);
      await t.close();
    }
  });

  it('an object overwritten at the origin between parts is CHANGED (paused by the proxy)', async () => {
    await direct.write('swap', patternBytes(400 * KiB, 10));
    let paused = false;
    proxy.setPlan(async (req) => {
      // The first part-GET that carries If-Match waits while the origin changes.
      if (!paused && req.method === 'GET' && req.url.includes('/swap') && req.headers['if-match']) {
        paused = true;
        await direct.write('swap', patternBytes(400 * KiB, 11));
      }
      return undefined;
    });
    const t = viaProxy({ directGets });
    try {
      const err = await t.read('swap').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isTierError(err, 'CHANGED')).toBe(true);
      expect(paused).toBe(true);
    } finally {
      proxy.setPlan(undefined);
      await t.close();
    }
  });
});

describe('writes through injected faults', () => {
  it('writes through faults publish exactly the bytes or fail typed', async () => {
    proxy.setPlan({ seed: 3, status500: 0.1, status503: 0.1, drop: 0.1, methods: ['PUT', 'POST'] });
    const t = viaProxy({ multipartThreshold: 5 * 1024 * KiB, uploadPartSize: 5 * 1024 * KiB });
    try {
      for (let i = 0; i < 6; i++) {
        const data = patternBytes(i % 2 ? 100 * KiB : 6 * 1024 * KiB, 20 + i);
        try {
          await t.write(`w${i}`, data);
        } catch (err) {
          if (!isTierError(err)) throw err;
          continue;
        }
        expect(Buffer.compare((await direct.read(`w${i}`))!, data)).toBe(0);
      }
    } finally {
      proxy.setPlan(undefined);
      await t.close();
    }
  }, 60_000);
});

describe('shaping', () => {
  it('limits bandwidth per connection and adds latency', async () => {
    const t = viaProxy({ concurrency: 1, partSize: 8 * 1024 * KiB });
    proxy.setShaping({ bytesPerSecond: 4 * 1024 * KiB, latencyMs: 30 });
    try {
      const data = objects.get('bigger')!;
      const started = performance.now();
      await t.read('bigger');
      const secs = (performance.now() - started) / 1000;
      const expected = data.byteLength / (4 * 1024 * KiB) + 0.03;
      expect(secs).toBeGreaterThan(expected * 0.8);
      expect(secs).toBeLessThan(expected * 1.6 + 0.2);
    } finally {
      proxy.setShaping(undefined);
      await t.close();
    }
  });

  it('the TCP-level shaping proxy holds each connection to its rate, adds latency, and passes bytes unchanged', async () => {
    const shaper = await startShapingProxy({
      target: origin.endpoint,
      bytesPerSecond: 4 * 1024 * KiB,
      latencyMs: 30,
    });
    const { credentials } = localS3ClientConfig(origin.endpoint);
    const t = new S3Tier({
      bucket: 'faults',
      endpoint: shaper.endpoint,
      credentials,
      concurrency: 1,
      adaptive: false,
    });
    try {
      const data = objects.get('bigger')!;
      const started = performance.now();
      expect(Buffer.compare((await t.read('bigger'))!, data)).toBe(0);
      const secs = (performance.now() - started) / 1000;
      // One connection at 4 MiB/s cannot move 1.5 MiB faster than this, plus one request's latency.
      expect(secs).toBeGreaterThan((data.byteLength - 64 * KiB) / (4 * 1024 * KiB) + 0.03);
      const tiny = performance.now();
      expect(Buffer.compare((await t.read('tiny'))!, objects.get('tiny')!)).toBe(0);
      expect(performance.now() - tiny).toBeGreaterThanOrEqual(29);
    } finally {
      await t.close();
      await shaper.close();
    }
  });
});
