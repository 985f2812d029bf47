/**
 * An object larger than the cache: a 64 MiB object through a 32 MiB fs cache.
 * The cache cannot hold it, so the stack serves it from the origin straight
 * through — whole, ranged, into a buffer, as a stream — byte-exact, says so
 * once per read (onWarning op 'bypass', stats().bypassed), and a range read
 * still fetches only the bytes it asks for.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import {
  createStack,
  DelegatingTier,
  MemoryTier,
  type ReadIntoOptions,
  type ReadOptions,
} from '@tierkit/tier-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { tempDir } from './test-utils.js';

const MiB = 1024 * 1024;

/** Counts the bytes read from the origin. */
class Counting extends DelegatingTier {
  bytes = 0;
  override async read(key: string, options?: ReadOptions) {
    const v = await super.read(key, options);
    this.bytes += v?.byteLength ?? 0;
    return v;
  }
  override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
    const n = await super.readInto(key, target, options);
    this.bytes += n ?? 0;
    return n;
  }
}

let base = '';
let cleanup = async () => {};
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('small'));
});
afterAll(() => cleanup());

const big = Uint8Array.from({ length: 64 * MiB }, (_, i) => (i * 2654435761) >>> 24);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('an object larger than the cache', () => {
  it('is served from the origin straight through, byte-exact, and nothing is cached', async () => {
    const memory = new MemoryTier({ name: 'origin' });
    await memory.write('model.bin', big);
    const origin = new Counting(memory);
    const cache = new FsTier({ root: join(base, 'cache'), name: 'nvme', maxBytes: 32 * MiB });
    const warnings: { op: string; tier: string; code?: string }[] = [];
    const stack = createStack([cache, origin], {
      onWarning: (w) => warnings.push({ op: w.op, tier: w.tier, code: (w.error as { code?: string }).code }),
    });

    expect(sha((await stack.read('model.bin'))!)).toBe(sha(big));

    origin.bytes = 0;
    const range = await stack.read('model.bin', { range: { offset: 40 * MiB + 3, length: 8 } });
    expect(Buffer.from(range!).equals(Buffer.from(big.subarray(40 * MiB + 3, 40 * MiB + 11)))).toBe(true);
    expect(origin.bytes).toBe(8);

    const into = new Uint8Array(5 * MiB);
    expect(await stack.readInto('model.bin', into, { offset: 60 * MiB })).toBe(4 * MiB);
    expect(Buffer.from(into.subarray(0, 4 * MiB)).equals(Buffer.from(big.subarray(60 * MiB)))).toBe(true);

    const stream = await stack.readStream('model.bin');
    const hash = createHash('sha256');
    for await (const chunk of stream!) hash.update(chunk as Uint8Array);
    expect(hash.digest('hex')).toBe(sha(big));

    expect(stack.stats().bypassed).toBe(4);
    expect(warnings).toEqual(Array(4).fill({ op: 'bypass', tier: 'nvme', code: 'CAPACITY' }));
    expect(cache.usedBytes).toBe(0);
    expect(await cache.stat('model.bin')).toBeUndefined();
    await stack.close();
  });

  it('fill does not fail: it says the object was not cached because it does not fit', async () => {
    const origin = new MemoryTier({ name: 'origin' });
    await origin.write('model.bin', big);
    const cache = new FsTier({ root: join(base, 'cache-fill'), name: 'nvme', maxBytes: 32 * MiB });
    const warnings: string[] = [];
    const stack = createStack([cache, origin], { onWarning: (w) => warnings.push(`${w.op} ${w.tier}`) });
    const got = await stack.fill('model.bin');
    expect(got).toMatchObject({
      key: 'model.bin',
      size: 64 * MiB,
      notCached: { tier: 'nvme', reason: 'too-large' },
    });
    expect(got!.notCached!.message).toMatch(/exceeds maxBytes/);
    expect(warnings).toEqual(['bypass nvme']);
    expect(stack.stats().bypassed).toBe(1);
    expect(await cache.stat('model.bin')).toBeUndefined();
    // A fill that fits reports nothing of the kind.
    await origin.write('small.bin', new Uint8Array(1000).fill(1));
    expect((await stack.fill('small.bin'))?.notCached).toBeUndefined();
    await stack.close();
  });

  it('a stream under way whose blocks the cache can no longer store goes on from the origin, byte-exact', async () => {
    const memory = new MemoryTier({ name: 'origin' });
    const obj = big.subarray(0, 24 * MiB);
    await memory.write('model.bin', obj);
    await memory.write('pinned.bin', big.subarray(0, 20 * MiB));
    // The origin holds back every block past the first 2 MiB until the test lets it go.
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    class Gated extends DelegatingTier {
      override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
        if (key === 'model.bin' && (options?.offset ?? 0) >= 2 * MiB) await gate;
        return super.readInto(key, target, options);
      }
    }
    const cache = new FsTier({ root: join(base, 'cache-stream'), name: 'nvme', maxBytes: 32 * MiB });
    const warnings: string[] = [];
    const stack = createStack([cache, new Gated(memory)], {
      blockSize: MiB,
      onWarning: (w) => warnings.push(`${w.op} ${(w.error as { code?: string }).code}`),
    });
    const stream = (await stack.readStream('model.bin'))!;
    const chunks: Uint8Array[] = [];
    const it = stream[Symbol.asyncIterator]();
    chunks.push((await it.next()).value as Uint8Array);
    // Meanwhile the cache fills up with what it must keep (pinned): no block of the stream fits any more.
    await stack.fill('pinned.bin');
    await cache.pin('pinned.bin');
    open();
    for (let r = await it.next(); !r.done; r = await it.next()) chunks.push(r.value as Uint8Array);
    expect(sha(Buffer.concat(chunks))).toBe(sha(obj));
    expect(warnings).toContain('bypass CAPACITY');
    expect(stack.stats().bypassed).toBeGreaterThan(0);
    await stack.close();
  });

  it('objects that fit are still cached beside it', async () => {
    const origin = new MemoryTier({ name: 'origin' });
    await origin.write('model.bin', big);
    await origin.write('config.json', new TextEncoder().encode('{"n":1}'));
    const cache = new FsTier({ root: join(base, 'cache2'), name: 'nvme', maxBytes: 32 * MiB });
    const stack = createStack([cache, origin]);
    expect((await stack.read('model.bin', { range: { offset: 0, length: 4 } }))?.byteLength).toBe(4);
    expect(new TextDecoder().decode(await stack.read('config.json'))).toBe('{"n":1}');
    expect((await cache.stat('config.json'))?.size).toBe(7);
    expect(stack.stats().bypassed).toBe(1);
    await stack.close();
  });
});
