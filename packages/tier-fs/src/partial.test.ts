import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isShared } from '@tierkit/pool';
import {
  createStack,
  DelegatingTier,
  isTierError,
  type ReadIntoOptions,
  type ReadOptions,
  type Tier,
} from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { runFixture, tempDir } from './test-utils.js';

/** Records the ranges the origin serves. */
class Counting extends DelegatingTier {
  fetched = 0;
  readonly ranges: number[] = [];
  override async readStream(key: string, options?: ReadOptions) {
    const stream = await this.inner.readStream(key, options);
    this.ranges.push(options?.range?.offset ?? 0);
    stream?.on('data', (c: Uint8Array) => {
      this.fetched += c.byteLength;
    });
    return stream;
  }
  override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
    const n = await this.inner.readInto(key, target, options);
    this.ranges.push(options?.offset ?? 0);
    this.fetched += n ?? 0;
    return n;
  }
}

const BS = 64 * 1024;
let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups) await c();
  cleanups = [];
});

async function setup(size: number, pool = true) {
  const { dir, cleanup } = await tempDir('partial');
  cleanups.push(cleanup);
  const originFs = new FsTier({ root: join(dir, 'origin'), name: 'origin' });
  const bytes = patternBytes(size, 5);
  await originFs.write('models/m.safetensors', bytes);
  cleanups.unshift(() => originFs.close());
  const open = () => {
    const cache = new FsTier({ root: join(dir, 'cache'), name: 'cache', pool });
    const origin = new Counting(new FsTier({ root: join(dir, 'origin'), name: 'origin' }));
    const stack = createStack([cache, origin as Tier], { blockSize: BS, fillConcurrency: 4 });
    return { cache, origin, stack };
  };
  return { dir, originFs, bytes, open };
}

describe('tier-fs partial copies (block-granular read-through)', () => {
  it('a range read fetches only its blocks; partial entries survive a restart and are completed, not refetched', async () => {
    const size = 10 * BS + 123;
    const { dir, bytes, open } = await setup(size);
    const a = open();
    const got = await a.stack.read('models/m.safetensors', { range: { offset: 3 * BS - 10, length: 20 } });
    expect(got).toEqual(bytes.subarray(3 * BS - 10, 3 * BS + 10));
    expect(a.origin.ranges).toEqual([2 * BS]); // blocks 2 and 3: one span
    // Not served as an object yet: the plain path is empty until every block is there.
    expect(await a.cache.stat('models/m.safetensors')).toBeUndefined();
    await a.stack.close();

    const b = open();
    const whole = await b.stack.read('models/m.safetensors');
    // (Buffer.compare: a deep toEqual of 640 KiB takes seconds of CPU.)
    expect(Buffer.compare(Buffer.from(whole!), Buffer.from(bytes))).toBe(0);
    expect(b.origin.fetched).toBe(size - 2 * BS);
    expect(b.origin.ranges.sort((x, y) => x - y)).toEqual([0, 4 * BS]);
    // Published as a plain file at its key's path, with the origin's identity.
    expect(
      Buffer.compare(await readFile(join(dir, 'cache', 'models/m.safetensors')), Buffer.from(bytes)),
    ).toBe(0);
    expect((await b.cache.stat('models/m.safetensors'))?.source?.size).toBe(size);
    expect(await readdir(join(dir, 'cache', '.tierkit', 'partial'))).toEqual([]);
    await b.stack.close();
  });

  it.each([true, false])('pool: %s — blocks are written byte-exact, each fetched once', async (pool) => {
    const size = 9 * BS + 77;
    const { bytes, open } = await setup(size, pool);
    const a = open();
    const [entry] = await Promise.all([
      a.cache.openPartial('probe', { size: 10 }, { blockSize: 10 }),
      Promise.resolve(),
    ]);
    // With a pool the entry hands out shared memory, so a worker can write it without a copy.
    expect(isShared(entry.blockBuffer!(16))).toBe(pool);
    await entry.discard();
    await entry.close();
    const got = await a.stack.read('models/m.safetensors');
    expect(Buffer.compare(Buffer.from(got!), Buffer.from(bytes))).toBe(0);
    expect(a.origin.fetched).toBe(size);
    await a.stack.close();
  });

  it.each([true, false])(
    'directFill: %s — whole blocks go past the page cache where the filesystem allows, the tail buffered',
    async (directFill) => {
      const { dir } = await setup(10);
      const root = join(dir, `direct-${directFill}`);
      const tier = new FsTier({ root, name: 'cache', directFill });
      cleanups.unshift(() => tier.close());
      await tier.open();
      expect(tier.directFill).toBe(directFill);
      // Does this filesystem take O_DIRECT writes (tmpfs does not)? Asked the way the tier
      // must: a 4 KiB direct write from some 8-byte offset of a buffer.
      let supported = false;
      try {
        const fd = openSync(join(root, 'probe'), constants.O_RDWR | constants.O_CREAT | constants.O_DIRECT);
        const buf = Buffer.allocUnsafeSlow(8192);
        for (let at = 0; at < 4096 && !supported; at += 8) {
          try {
            writeSync(fd, buf, at, 4096, 0);
            supported = true;
          } catch {}
        }
        closeSync(fd);
      } catch {}
      const bs = 64 * 1024;
      const size = 3 * bs + 100;
      const bytes = patternBytes(size, 11);
      const entry = await tier.openPartial('m', { size, etag: '"d"' }, { blockSize: bs });
      for (let b = 0; b < 4; b++) {
        const start = b * bs;
        const chunk = bytes.subarray(start, Math.min(start + bs, size));
        const buf = entry.blockBuffer!(chunk.byteLength);
        buf.set(chunk);
        await entry.writeBlock(b, buf);
      }
      // Three whole blocks direct; the 100-byte tail is not a multiple of 4 KiB.
      expect((entry as unknown as { directWrites: number }).directWrites).toBe(
        directFill && supported ? 3 : 0,
      );
      await entry.publish();
      await entry.close();
      expect(Buffer.compare(Buffer.from((await tier.read('m'))!), Buffer.from(bytes))).toBe(0);
    },
  );

  it('a block torn by a crash is fetched again, never served', async () => {
    const { dir, bytes, open } = await setup(4 * BS);
    const a = open();
    await a.stack.read('models/m.safetensors', { range: { offset: 0, length: 2 * BS } });
    await a.stack.close();
    // Damage block 1 as a power loss could: marker written, data not.
    const [partial] = await readdir(join(dir, 'cache', '.tierkit', 'partial'));
    const partialDir = join(dir, 'cache', '.tierkit', 'partial', partial!);
    const dataPath = join(partialDir, (await readdir(partialDir)).find((f) => f.startsWith('data.'))!);
    const data = await readFile(dataPath);
    data.fill(0, BS + 100, BS + 200);
    await writeFile(dataPath, data);

    const b = open();
    expect(
      Buffer.compare(Buffer.from((await b.stack.read('models/m.safetensors'))!), Buffer.from(bytes)),
    ).toBe(0);
    expect(b.origin.ranges).toEqual([BS]); // blocks 1–3 in one span, block 0 kept
    expect(b.origin.fetched).toBe(3 * BS);
    await b.stack.close();
  });

  it('an object changed at the origin drops its partial copy', async () => {
    const { originFs, open } = await setup(4 * BS);
    const a = open();
    await a.stack.read('models/m.safetensors', { range: { offset: 0, length: 10 } });
    await a.stack.close();
    const next = patternBytes(3 * BS + 7, 9);
    await originFs.write('models/m.safetensors', next);
    const b = open();
    expect(await b.stack.read('models/m.safetensors')).toEqual(next);
    expect(b.origin.fetched).toBe(next.byteLength);
    await b.stack.close();
  });

  it('refuses a partial copy larger than the tier', async () => {
    const { dir } = await setup(10);
    const small = new FsTier({ root: join(dir, 'small'), maxBytes: 1000 });
    const err = await small.openPartial('k', { size: 5000, etag: '"x"' }, { blockSize: 100 }).catch((e) => e);
    expect(isTierError(err, 'CAPACITY')).toBe(true);
    const bad = await small.openPartial('../k', { size: 5 }, { blockSize: 100 }).catch((e) => e);
    expect(isTierError(bad, 'INVALID_KEY')).toBe(true);
    await small.close();
  });

  it('a partial retired by another process is never confused with the next one at its path', async () => {
    const { dir } = await setup(10);
    const root = join(dir, 'shared');
    // Three tiers on one root stand for three processes.
    const [a, b, c] = ['a', 'b', 'c'].map((name) => new FsTier({ root, name }));
    cleanups.unshift(async () => {
      for (const t of [a, b, c]) await t!.close();
    });
    const source = { size: 300, etag: '"e"' };
    const bytes = patternBytes(300, 7);
    const opts = { blockSize: 100 };

    const x = await a!.openPartial('k', source, opts);
    for (let i = 0; i < 3; i++) await x.writeBlock(i, bytes.subarray(i * 100, (i + 1) * 100));
    const late = await b!.openPartial('k', source, opts); // the same partial, complete
    await x.publish();
    // A third process misses the old partial and starts the next one at the same path.
    const next = await c!.openPartial('k', source, opts);
    expect(next.has(0)).toBe(false);
    await next.close();
    // The late publisher must not publish the next partial's (empty) data.
    const meta = await late.publish();
    expect(meta.size).toBe(300);
    expect(Buffer.compare(Buffer.from((await b!.read('k'))!), Buffer.from(bytes))).toBe(0);
    await late.close();

    // A process that knew the old partial's blocks must not credit them to the next one.
    await b!.delete('k');
    const again = await a!.openPartial('k', source, opts);
    expect([0, 1, 2].map((i) => again.has(i))).toEqual([false, false, false]);
    await again.close();
    await x.close();
  });

  it('processes opening the same partials at once share one copy each, new or replacing another source', async () => {
    const { dir } = await setup(10);
    const root = join(dir, 'shared');
    const n = 100;
    const seed = new FsTier({ root, name: 'seed' });
    // Half the keys start with a partial of another source, which the openers must replace once.
    for (let k = 0; k < n; k += 2) {
      await (await seed.openPartial(`k${k}`, { size: 400, etag: '"old"' }, { blockSize: 100 })).close();
    }
    await seed.close();
    const children = [0, 1, 2, 3].map((i) => runFixture('partial-opener.mjs', [root, String(i), String(n)]));
    for (const c of children) {
      await c.waitFor(/^done$/, 60_000);
      const exit = await c.exited;
      expect(exit.code, exit.stderr).toBe(0);
    }
    // Every process's block landed in the one partial that stayed.
    const check = new FsTier({ root, name: 'check' });
    cleanups.unshift(() => check.close());
    for (let k = 0; k < n; k++) {
      const entry = await check.openPartial(`k${k}`, { size: 400, etag: '"new"' }, { blockSize: 100 });
      expect(
        [0, 1, 2, 3].map((b) => entry.has(b)),
        `k${k}`,
      ).toEqual([true, true, true, true]);
      await entry.close();
    }
  }, 90_000);

  it('4 processes reading the same cold object fetch each block from the origin once', async () => {
    const size = 48 * BS + 999;
    const { dir, bytes } = await setup(size);
    const want = createHash('sha256').update(bytes).digest('hex');
    const children = Array.from({ length: 4 }, () =>
      runFixture('fill-reader.mjs', [
        join(dir, 'cache'),
        join(dir, 'origin'),
        'models/m.safetensors',
        String(BS),
      ]),
    );
    const results = [];
    for (const c of children) {
      const line = await c.waitFor(/^\{/, 60_000);
      const exit = await c.exited;
      expect(exit.code, exit.stderr).toBe(0);
      results.push(JSON.parse(line));
    }
    for (const r of results) {
      expect(r.sha).toBe(want);
      expect(r.size).toBe(size);
    }
    expect(results.reduce((n, r) => n + r.fetched, 0)).toBe(size);
  }, 90_000);
});
