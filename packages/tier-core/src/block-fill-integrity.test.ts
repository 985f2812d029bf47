/**
 * End-to-end integrity of block fills: every byte published is checked against
 * the digest the origin states (fed in order on the digest worker as blocks
 * arrive out of order); a mismatch fetches the object again, and fails with
 * INTEGRITY when every fetch is wrong — never served whole, never cached.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { digestKit } from './digest-kit.js';
import { isTierError, type TierError } from './errors.js';
import { DelegatingTier } from './layers/delegate.js';
import { MemoryTier } from './memory.js';
import { createStack } from './stack.js';
import { MemoryBlockTier } from './test-block-cache.js';
import { patternBytes } from './testing/index.js';
import type {
  DigestAlgorithm,
  DigestSource,
  ObjectDigest,
  ObjectMeta,
  OpOptions,
  ReadIntoOptions,
  ReadOptions,
} from './tier.js';

const kit = digestKit(createRequire(import.meta.url));
const ALGORITHMS: DigestAlgorithm[] = ['md5', 'sha1', 'sha256', 'crc32', 'crc32c', 'crc64nvme'];

function digest(bytes: Uint8Array, algorithm: DigestAlgorithm, partSize?: number): string {
  const s = kit.create(partSize ? { algorithm, partSize } : { algorithm });
  s.update(bytes);
  return s.finish();
}

/**
 * An origin that states digests of its objects in `stat` (as S3 does with
 * checksum mode on), can corrupt the next reads in transit, and learns part
 * sizes like S3's HEAD of part 1.
 */
class StatingOrigin extends DelegatingTier implements DigestSource {
  digests: ObjectDigest[] = [];
  partSize: number | undefined;
  /** Reads still to corrupt (one byte flipped in each). */
  flips = 0;
  fetched = 0;
  override async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    const m = await this.inner.stat(key, options);
    return m && this.digests.length > 0 ? { ...m, digests: this.digests } : m;
  }
  override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
    const n = await this.inner.readInto(key, target, options);
    if (n !== undefined) {
      this.fetched += n;
      if (this.flips > 0 && n > 0) {
        this.flips--;
        target[Math.floor(n / 2)]! ^= 0x20;
      }
    }
    return n;
  }
  override async read(key: string, options?: ReadOptions) {
    return this.inner.read(key, options);
  }
  async resolveDigest(_key: string, d: ObjectDigest): Promise<ObjectDigest | undefined> {
    return this.partSize ? { ...d, partSize: this.partSize } : undefined;
  }
}

const KB = 1000;

function setup(size = 20 * KB + 17, blockSize = 1000) {
  const cache = new MemoryBlockTier({ name: 'cache' });
  const mem = new MemoryTier({ name: 'origin' });
  const origin = new StatingOrigin(mem);
  // Small spans and pieces of one block: blocks land out of order across spans.
  const stack = createStack([cache, origin], { blockSize, fillConcurrency: 4, spanBytes: 3 * blockSize });
  const bytes = patternBytes(size, 7);
  return { cache, mem, origin, stack, bytes };
}

function expectIntegrity(err: unknown): TierError {
  expect(isTierError(err), String(err)).toBe(true);
  expect((err as TierError).code, (err as Error).message).toBe('INTEGRITY');
  return err as TierError;
}

const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

async function collect(s: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

describe('fills checked against the origin’s stated digest', () => {
  it.each(ALGORITHMS)(
    '%s: a cold read is checked and the copy published with its source digest',
    async (algorithm) => {
      const { cache, mem, origin, stack, bytes } = setup();
      await mem.write('k', bytes);
      origin.digests = [{ algorithm, value: digest(bytes, algorithm), from: 'checksum' }];
      expect(same(await stack.read('k'), bytes)).toBe(true);
      const cached = await cache.stat('k');
      expect(cached?.source?.digests?.[0]?.algorithm).toBe(algorithm);
      expect(same(await cache.read('k'), bytes)).toBe(true);
      expect(origin.fetched).toBe(bytes.byteLength);
      await stack.close();
    },
  );

  it.each(ALGORITHMS)(
    '%s: a wrong stated digest fails every fetch with INTEGRITY; nothing is cached',
    async (algorithm) => {
      const { cache, mem, origin, stack, bytes } = setup();
      await mem.write('k', bytes);
      const wrong = digest(patternBytes(bytes.byteLength, 8), algorithm);
      origin.digests = [{ algorithm, value: wrong, from: 'checksum' }];
      const err = expectIntegrity(await stack.read('k').catch((e: unknown) => e));
      expect(err.details).toMatchObject({ algorithm, expected: wrong, attempts: 3 });
      expect(origin.fetched).toBe(3 * bytes.byteLength);
      expect(await cache.stat('k')).toBeUndefined();
      await stack.close();
    },
  );

  it('a byte flipped in transit: the fill fetches again; the read and the cached copy are byte-exact', async () => {
    const { cache, mem, origin, stack, bytes } = setup();
    await mem.write('k', bytes);
    origin.digests = [{ algorithm: 'crc64nvme', value: digest(bytes, 'crc64nvme'), from: 'checksum' }];
    origin.flips = 1;
    expect(same(await stack.read('k'), bytes)).toBe(true);
    expect(origin.flips).toBe(0);
    expect(origin.fetched).toBe(2 * bytes.byteLength);
    expect(same(await cache.read('k'), bytes)).toBe(true);
    // readInto, whole object, the same way.
    await cache.delete('k');
    origin.flips = 1;
    const target = new Uint8Array(bytes.byteLength);
    expect(await stack.readInto('k', target)).toBe(bytes.byteLength);
    expect(same(target, bytes)).toBe(true);
    expect(same(await cache.read('k'), bytes)).toBe(true);
    await stack.close();
  });

  it('flipped on every fetch: read, readInto, stream and fill() fail with INTEGRITY; nothing is cached', async () => {
    const { cache, mem, origin, stack, bytes } = setup();
    await mem.write('k', bytes);
    origin.digests = [{ algorithm: 'sha256', value: digest(bytes, 'sha256'), from: 'checksum' }];
    origin.flips = 1_000_000;
    expectIntegrity(await stack.read('k').catch((e: unknown) => e));
    expectIntegrity(await stack.readInto('k', new Uint8Array(bytes.byteLength)).catch((e: unknown) => e));
    expectIntegrity(await collect((await stack.readStream('k'))!).catch((e: unknown) => e));
    expectIntegrity(await stack.fill('k').catch((e: unknown) => e));
    expect(await cache.stat('k')).toBeUndefined();
    await stack.close();
  });

  it('a whole-object stream flipped once fails (its bytes went out unverified); the copy is cached verified', async () => {
    const { cache, mem, origin, stack, bytes } = setup();
    await mem.write('k', bytes);
    origin.digests = [{ algorithm: 'md5', value: digest(bytes, 'md5'), from: 'etag' }];
    origin.flips = 1;
    const err = expectIntegrity(await collect((await stack.readStream('k'))!).catch((e: unknown) => e));
    expect(err.details).toMatchObject({ restartable: true });
    expect(same(await cache.read('k'), bytes)).toBe(true);
    expect(same(await collect((await stack.readStream('k'))!), bytes)).toBe(true);
    await stack.close();
  });

  it('a per-part digest (multipart ETag) is checked once the source gives the part size', async () => {
    const { cache, mem, origin, stack, bytes } = setup(23 * KB + 5);
    await mem.write('k', bytes);
    const partSize = 5 * KB + 120; // not a multiple of the block size
    origin.digests = [{ algorithm: 'md5', value: digest(bytes, 'md5', partSize), parts: 5, from: 'etag' }];
    origin.partSize = partSize;
    origin.flips = 1;
    expect(same(await stack.read('k'), bytes)).toBe(true);
    expect(origin.fetched).toBe(2 * bytes.byteLength);
    expect((await cache.stat('k'))?.source?.digests?.[0]?.parts).toBe(5);
    await stack.close();
  });

  it('a per-part digest whose part size cannot be learned is not checked (published unverified)', async () => {
    const { cache, mem, origin, stack, bytes } = setup();
    await mem.write('k', bytes);
    origin.digests = [{ algorithm: 'md5', value: 'ab'.repeat(16), parts: 3, from: 'etag' }];
    expect(same(await stack.read('k'), bytes)).toBe(true);
    expect(await cache.stat('k')).toBeDefined();
    await stack.close();
  });

  it('an ETag that is consistently no MD5 of the bytes says so', async () => {
    const { mem, origin, stack, bytes } = setup();
    await mem.write('k', bytes);
    origin.digests = [{ algorithm: 'md5', value: 'cd'.repeat(16), from: 'etag' }];
    const err = expectIntegrity(await stack.fill('k').catch((e: unknown) => e));
    expect(err.message).toMatch(/ETag may not be an MD5/);
    expect(err.details).toMatchObject({ from: 'etag', consistent: true });
    await stack.close();
  });
});

describe('digests recorded during the fill', () => {
  it('fill({ digests: [sha256] }) reports the sha256 of the bytes, computed as they arrived: nothing read back', async () => {
    const { cache, mem, origin, stack, bytes } = setup(50 * KB + 3);
    await mem.write('k', bytes);
    origin.digests = [{ algorithm: 'crc32c', value: digest(bytes, 'crc32c'), from: 'checksum' }];
    const meta = await stack.fill('k', { digests: ['sha256'] });
    const sha = meta?.digests?.find((d) => d.algorithm === 'sha256');
    expect(sha?.value).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(cache.readBack).toBe(0);
    await stack.close();
  });

  it('with nothing stated by the origin, the sha256 is still computed; the copy is published unverified', async () => {
    const { cache, mem, stack, bytes } = setup();
    await mem.write('k', bytes);
    const meta = await stack.fill('k', { digests: ['sha256'] });
    expect(meta?.digests?.[0]?.value).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect((await cache.stat('k'))?.source?.digests).toBeUndefined();
    await stack.close();
  });

  it('a fill resumed from a partial copy reads back only the blocks it did not fetch, and checks the whole', async () => {
    const { cache, mem, origin, stack, bytes } = setup(10 * KB);
    await mem.write('k', bytes);
    origin.digests = [{ algorithm: 'sha1', value: digest(bytes, 'sha1'), from: 'checksum' }];
    // A range read leaves blocks 2..4 in the partial copy.
    expect(
      same(await stack.read('k', { range: { offset: 2000, length: 3000 } }), bytes.subarray(2000, 5000)),
    ).toBe(true);
    expect(await cache.stat('k')).toBeUndefined();
    const meta = await stack.fill('k', { digests: ['sha256'] });
    expect(meta?.digests?.find((d) => d.algorithm === 'sha256')?.value).toBe(
      createHash('sha256').update(bytes).digest('hex'),
    );
    expect(cache.readBack).toBe(3000);
    expect(origin.fetched).toBe(bytes.byteLength);
    expect(same(await cache.read('k'), bytes)).toBe(true);
    await stack.close();
  });

  it('a range read of an object with a stated digest is served without waiting for the whole', async () => {
    const { cache, mem, origin, stack, bytes } = setup();
    await mem.write('k', bytes);
    origin.digests = [{ algorithm: 'sha256', value: digest(bytes, 'sha256'), from: 'checksum' }];
    expect(same(await stack.read('k', { range: { offset: 0, length: 1500 } }), bytes.subarray(0, 1500))).toBe(
      true,
    );
    expect(origin.fetched).toBe(2000);
    expect(await cache.stat('k')).toBeUndefined();
    await stack.close();
  });
});
