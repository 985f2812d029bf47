import { patternBytes } from '@tierkit/tier-core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Tier, type S3TierOptions } from './index.js';
import { RequestSlots } from './request.js';
import {
  type FaultProxy,
  type LocalS3,
  localS3ClientConfig,
  startFaultProxy,
  startLocalS3,
} from './testing/index.js';

const KiB = 1024;

describe('RequestSlots', () => {
  it('never lets more than its capacity run, and gives a freed slot to the key with the fewest in flight', async () => {
    const slots = new RequestSlots(2);
    await slots.acquire('big');
    await slots.acquire('big');
    const order: string[] = [];
    const queued = ['big', 'big', 'small'].map((k) => slots.acquire(k).then(() => order.push(k)));
    expect(slots.inFlight).toBe(2);
    expect(slots.waiting).toBe(3);
    slots.release('big');
    await Promise.resolve();
    // 'small' has nothing in flight: it goes before the two 'big' waiters that came first.
    expect(order).toEqual(['small']);
    expect(slots.inFlight).toBe(2);
    slots.release('big');
    slots.release('small');
    await Promise.all(queued);
    expect(order).toEqual(['small', 'big', 'big']);
    expect(slots.inFlight).toBe(2);
  });

  it('drops an aborted waiter without taking a slot', async () => {
    const slots = new RequestSlots(1);
    await slots.acquire('a');
    const ac = new AbortController();
    const waiting = slots.acquire('b', ac.signal);
    ac.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'ABORTED' });
    expect(slots.waiting).toBe(0);
    slots.release('a');
    expect(slots.inFlight).toBe(0);
  });
});

describe('one budget of GETs in flight across every read of a tier', () => {
  let s3: LocalS3;
  let proxy: FaultProxy;
  let gets: string[] = [];
  const objects = Array.from({ length: 6 }, (_, i) => ({
    key: `shard-${i}`,
    bytes: patternBytes(1024 * KiB, i + 1),
  }));
  const small = { key: 'config.json', bytes: patternBytes(3 * KiB, 99) };

  beforeAll(async () => {
    s3 = await startLocalS3({ buckets: ['slots'] });
    proxy = await startFaultProxy({
      target: s3.endpoint,
      plan: (req) => {
        if (req.method === 'GET') gets.push(req.url);
        return undefined;
      },
    });
    const w = tier(s3.endpoint, {});
    for (const o of [...objects, small]) await w.write(o.key, o.bytes);
    await w.close();
  });
  afterAll(async () => {
    await proxy?.close();
    await s3?.close();
  });

  function tier(endpoint: string, extra: Partial<S3TierOptions>) {
    const { credentials } = localS3ClientConfig(endpoint);
    // 64 KiB parts: each 1 MiB object is 16 ranged GETs, all wanted at once.
    return createS3Tier({ bucket: 'slots', endpoint, credentials, partSize: 64 * KiB, ...extra });
  }

  async function readAll(extra: Partial<S3TierOptions>) {
    const t = tier(proxy.endpoint, extra);
    proxy.stats.maxInFlight = 0;
    gets = [];
    try {
      const results = await Promise.all(
        objects.map(async (o) => {
          const target = new Uint8Array(o.bytes.byteLength);
          expect(await t.readInto(o.key, target)).toBe(o.bytes.byteLength);
          expect(Buffer.compare(target, o.bytes)).toBe(0);
        }),
      );
      return results;
    } finally {
      await t.close();
    }
  }

  it('six reads of 16 parts each never have more GETs at the server than maxRequestsInFlight', async () => {
    await readAll({ maxRequestsInFlight: 3 });
    expect(gets.length).toBe(6 * 16);
    expect(proxy.stats.maxInFlight).toBeLessThanOrEqual(3);
    expect(proxy.stats.maxInFlight).toBeGreaterThanOrEqual(2);
  });

  it('the same reads with room for all of them pile up past that (the bound above is what holds them)', async () => {
    await readAll({ maxRequestsInFlight: 256, concurrency: 16 });
    expect(proxy.stats.maxInFlight).toBeGreaterThan(3);
  });

  it('a small object read beside a big one takes the next free slot, not a place behind its parts', async () => {
    const t = tier(proxy.endpoint, { maxRequestsInFlight: 2 });
    gets = [];
    try {
      const big = new Uint8Array(objects[0]!.bytes.byteLength);
      const bigRead = t.readInto(objects[0]!.key, big);
      // Let the big read queue its parts first.
      await new Promise((r) => setImmediate(r));
      const got = await t.read(small.key);
      expect(Buffer.compare(got!, small.bytes)).toBe(0);
      await bigRead;
      const smallAt = gets.findIndex((u) => u.includes(small.key));
      // Two of the big read's GETs were running; the small one went out when the first finished.
      expect(smallAt).toBeGreaterThanOrEqual(1);
      expect(smallAt).toBeLessThanOrEqual(3);
      expect(gets.length).toBe(17);
    } finally {
      await t.close();
    }
  });
});
