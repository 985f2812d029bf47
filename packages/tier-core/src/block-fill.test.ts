import { Readable } from 'node:stream';
import * as vitest from 'vitest';
import { describe, expect, it } from 'vitest';
import { isTierError, TierError } from './errors.js';
import { DelegatingTier } from './layers/delegate.js';
import { MemoryTier } from './memory.js';
import { createStack } from './stack.js';
import { MemoryBlockTier } from './test-block-cache.js';
import { patternBytes, runTierConformance } from './testing/index.js';
import type { PartialEntry, PartialOptions, ReadIntoOptions, ReadOptions, SourceMeta } from './tier.js';

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** Records every range the origin is asked for. */
class RangeLog extends DelegatingTier {
  readonly ranges: string[] = [];
  fetched = 0;
  afterRead?: () => Promise<void>;
  override async readStream(key: string, options?: ReadOptions) {
    const stream = await this.inner.readStream(key, options);
    if (!stream) return stream;
    const r = options?.range;
    const bytes = new Uint8Array(await collect(stream));
    this.ranges.push(`${r?.offset ?? 0}+${bytes.byteLength}`);
    this.fetched += bytes.byteLength;
    await this.afterRead?.();
    return Readable.from([bytes]);
  }
  override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
    const n = await this.inner.readInto(key, target, options);
    if (n === undefined) return n;
    this.ranges.push(`${options?.offset ?? 0}+${n}`);
    this.fetched += n;
    await this.afterRead?.();
    return n;
  }
}

runTierConformance(vitest, {
  name: 'stack [memory block cache over memory], block-granular fills',
  create: () => ({
    tier: createStack([new MemoryBlockTier({ name: 'blocks' }), new MemoryTier({ name: 'origin' })], {
      blockSize: 1000,
    }),
  }),
});

function setup(size: number, blockSize = 1000, spanBytes?: number) {
  const cache = new MemoryBlockTier({ name: 'cache' });
  const originMem = new MemoryTier({ name: 'origin' });
  const origin = new RangeLog(originMem);
  const stack = createStack([cache, origin], { blockSize, fillConcurrency: 3, spanBytes });
  const bytes = patternBytes(size, 11);
  return { cache, originMem, origin, stack, bytes };
}

describe('block-granular read-through', () => {
  it('a range read of a cold object fetches only the blocks it touches, and keeps them', async () => {
    const { cache, originMem, origin, stack, bytes } = setup(10_500);
    await originMem.write('m', bytes);
    expect(await stack.read('m', { range: { offset: 2500, length: 1000 } })).toEqual(
      bytes.subarray(2500, 3500),
    );
    expect(origin.ranges).toEqual(['2000+2000']); // consecutive blocks: one span
    // A later read fetches only what is still missing.
    expect(await stack.read('m', { range: { offset: 2900, length: 1200 } })).toEqual(
      bytes.subarray(2900, 4100),
    );
    expect(origin.ranges).toEqual(['2000+2000', '4000+1000']);
    expect(await cache.stat('m')).toBeUndefined(); // still partial
    // A whole read completes the copy and publishes it; the short last block is fetched once.
    expect(await stack.read('m')).toEqual(bytes);
    expect(origin.fetched).toBe(10_500);
    expect((await cache.stat('m'))?.source?.etag).toBe((await originMem.stat('m'))?.etag);
    expect(await stack.read('m')).toEqual(bytes);
    expect(origin.fetched).toBe(10_500);
  });

  it('streams a cold object in order while blocks arrive, and publishes it', async () => {
    const { cache, originMem, origin, stack, bytes } = setup(25_000);
    await originMem.write('m', bytes);
    const stream = await stack.readStream('m');
    const parts: Buffer[] = [];
    for await (const c of stream!) parts.push(c as Buffer);
    expect(new Uint8Array(Buffer.concat(parts))).toEqual(bytes);
    expect(origin.fetched).toBe(25_000);
    // Blocks fetched while the stream waited were handed over, not read back from the cache.
    expect(cache.readBack).toBe(0);
    // Published before the stream ended: the next reader finds a complete copy.
    expect((await cache.stat('m'))?.size).toBe(25_000);
  });

  it('a cold read copies the blocks it fetches straight into the caller, reading back only those already cached', async () => {
    const { cache, originMem, origin, stack, bytes } = setup(10_500);
    await originMem.write('m', bytes);
    await stack.read('m', { range: { offset: 4000, length: 2000 } }); // blocks 4–5 cached
    cache.readBack = 0;
    const target = new Uint8Array(10_500);
    expect(await stack.readInto('m', target)).toBe(10_500);
    expect(Buffer.compare(Buffer.from(target), Buffer.from(bytes))).toBe(0);
    expect(cache.readBack).toBe(2000);
    expect(origin.fetched).toBe(10_500);
    // And through read(), a range that starts and ends inside blocks.
    const { cache: c2, originMem: o2, stack: s2, bytes: b2 } = setup(10_500);
    await o2.write('m', b2);
    const got = await s2.read('m', { range: { offset: 1234, length: 5678 } });
    expect(Buffer.compare(Buffer.from(got!), Buffer.from(b2.subarray(1234, 1234 + 5678)))).toBe(0);
    expect(c2.readBack).toBe(0);
  });

  it('two streams of one cold object both get every byte; one closed early leaves the other whole', async () => {
    const { originMem, origin, stack, bytes } = setup(25_000);
    await originMem.write('m', bytes);
    const [a, b] = await Promise.all([
      stack.readStream('m'),
      stack.readStream('m', { range: { offset: 3000, length: 15_000 } }),
    ]);
    const early = await stack.readStream('m');
    early!.destroy();
    const collectAll = async (s: AsyncIterable<Buffer>) => {
      const parts: Buffer[] = [];
      for await (const c of s) parts.push(c);
      return new Uint8Array(Buffer.concat(parts));
    };
    const [all, mid] = await Promise.all([collectAll(a!), collectAll(b!)]);
    expect(Buffer.compare(Buffer.from(all), Buffer.from(bytes))).toBe(0);
    expect(Buffer.compare(Buffer.from(mid), Buffer.from(bytes.subarray(3000, 18_000)))).toBe(0);
    expect(origin.fetched).toBe(25_000);
  });

  it('concurrent cold readers fetch each block once', async () => {
    const { originMem, origin, stack, bytes } = setup(50_000);
    await originMem.write('m', bytes);
    const reads = await Promise.all([
      stack.read('m'),
      stack.read('m', { range: { offset: 7000, length: 20_000 } }),
      stack.readInto('m', new Uint8Array(50_000)),
      stack.read('m'),
    ]);
    expect(reads[0]).toEqual(bytes);
    expect(reads[1]).toEqual(bytes.subarray(7000, 27_000));
    expect(origin.fetched).toBe(50_000);
    expect(new Set(origin.ranges).size).toBe(origin.ranges.length);
  });

  it('an object replaced at the origin mid-fill is served whole in its new version, never stitched', async () => {
    // One block per span: the fill reads the origin five times.
    const { originMem, origin, stack, bytes } = setup(5000, 1000, 1000);
    await originMem.write('m', bytes);
    const next = patternBytes(5000, 99);
    let replaced = false;
    origin.afterRead = async () => {
      if (!replaced) {
        replaced = true;
        await originMem.write('m', next);
      }
    };
    expect(await stack.read('m')).toEqual(next);
  });

  it('an object that keeps changing at the origin is reported as CHANGED', async () => {
    const { originMem, origin, stack } = setup(5000, 1000, 1000);
    await originMem.write('m', patternBytes(5000, 1));
    let version = 1;
    origin.afterRead = async () => {
      await originMem.write('m', patternBytes(5000, ++version));
    };
    const err = await stack.read('m').catch((e) => e);
    expect(isTierError(err, 'CHANGED')).toBe(true);
  });

  it('fill() completes a partly cached object, fetching only what is missing, and reports it', async () => {
    const { cache, originMem, origin, stack, bytes } = setup(9_500);
    await originMem.write('m', bytes);
    await stack.read('m', { range: { offset: 4000, length: 2000 } });
    const meta = await stack.fill('m');
    expect(meta?.size).toBe(9_500);
    expect(meta?.etag).toBe((await originMem.stat('m'))?.etag);
    expect(origin.fetched).toBe(9_500);
    expect(await cache.read('m')).toEqual(bytes);
    expect(await stack.fill('m')).toMatchObject({ size: 9_500 });
    expect(origin.fetched).toBe(9_500);
    expect(await stack.fill('absent')).toBeUndefined();
  });

  it('range errors are typed before anything is fetched', async () => {
    const { originMem, origin, stack, bytes } = setup(3000);
    await originMem.write('m', bytes);
    const err = await stack.read('m', { range: { offset: 2999, length: 2 } }).catch((e) => e);
    expect(isTierError(err, 'INVALID_RANGE')).toBe(true);
    expect(origin.fetched).toBe(0);
    expect(err).toBeInstanceOf(TierError);
  });
});

describe('block fill shutdown', () => {
  it('a failed read does not leave the fill waiting on blocks nobody will fetch', async () => {
    const cache = new MemoryBlockTier({ name: 'cache' });
    const originMem = new MemoryTier({ name: 'origin' });
    const origin = new RangeLog(originMem);
    // One block per span and one span at a time: most blocks are still queued when the first fails.
    const stack = createStack([cache, origin], { blockSize: 1000, fillConcurrency: 1, spanBytes: 1000 });
    await originMem.write('m', patternBytes(20_000, 4));
    origin.afterRead = async () => {
      throw new TierError('UNAVAILABLE', 'origin went away', { retryable: false });
    };
    const err = await stack.read('m').catch((e) => e);
    expect(isTierError(err, 'UNAVAILABLE')).toBe(true);
    // The stack closes the fill (waiting for it to settle); a hang here fails on the test timeout.
    origin.afterRead = undefined;
    expect(await stack.read('m')).toEqual(patternBytes(20_000, 4));
  }, 10_000);
});

/** A gate that operations wait at until `open()`; each wait honours its signal. */
class Gate {
  #open = false;
  readonly #waiting = new Set<() => void>();
  /** The signal of every operation that reached the gate. */
  readonly signals: (AbortSignal | undefined)[] = [];

  async pass(signal: AbortSignal | undefined): Promise<void> {
    this.signals.push(signal);
    if (this.#open) return;
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.#waiting.delete(go);
        reject(new TierError('ABORTED', 'aborted at the gate', { retryable: false }));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.add(go);
    });
  }

  open(): void {
    this.#open = true;
    for (const go of this.#waiting) go();
    this.#waiting.clear();
  }
}

/** An origin whose block reads (and, with `stats`, stats) wait at a gate. */
class GatedOrigin extends DelegatingTier {
  readonly reads = new Gate();
  readonly stats = new Gate();
  gateStats = false;
  override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
    await this.reads.pass(options?.signal);
    return this.inner.readInto(key, target, options);
  }
  override async stat(key: string, options?: { signal?: AbortSignal }) {
    if (this.gateStats) await this.stats.pass(options?.signal);
    return this.inner.stat(key, options);
  }
}

/** A block cache whose partial opens wait at a gate. */
class GatedOpens extends MemoryBlockTier {
  readonly opens = new Gate();
  override async openPartial(
    key: string,
    source: SourceMeta,
    options: PartialOptions,
  ): Promise<PartialEntry> {
    await this.opens.pass(options.signal);
    return super.openPartial(key, source, options);
  }
}

/** A block cache that counts its partial entries closed. */
class CountingCloses extends MemoryBlockTier {
  closed = 0;
  override async openPartial(
    key: string,
    source: SourceMeta,
    options: PartialOptions,
  ): Promise<PartialEntry> {
    const entry = await super.openPartial(key, source, options);
    const close = entry.close.bind(entry);
    entry.close = async () => {
      await close();
      this.closed++;
    };
    return entry;
  }
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 1));
}

describe('aborts stay local', () => {
  function gated(cache = new MemoryBlockTier({ name: 'cache' })) {
    const originMem = new MemoryTier({ name: 'origin' });
    const origin = new GatedOrigin(originMem);
    const stack = createStack([cache, origin], { blockSize: 1000, fillConcurrency: 2 });
    return { cache, originMem, origin, stack, bytes: patternBytes(20_500, 21) };
  }

  // The origin's reads never finish on their own here: a read that settles proves its wait ended by itself.
  it.each(['read', 'readInto', 'readStream'] as const)(
    'a %s aborted mid-fill settles ABORTED at once; its fill, wanted by nobody, is cancelled',
    async (how) => {
      const { origin, originMem, stack, bytes } = gated();
      await originMem.write('m', bytes);
      const ac = new AbortController();
      const p =
        how === 'read'
          ? stack.read('m', { signal: ac.signal })
          : how === 'readInto'
            ? stack.readInto('m', new Uint8Array(bytes.byteLength), { signal: ac.signal })
            : stack.readStream('m', { signal: ac.signal }).then((s) => collect(s!));
      await until(() => origin.reads.signals.length > 0);
      ac.abort();
      const err = await p.then(
        () => 'served',
        (e: unknown) => e,
      );
      expect(isTierError(err, 'ABORTED')).toBe(true);
      // Its in-flight origin reads were aborted, under the fill's own signal (not the reader's).
      await until(() => origin.reads.signals.every((s) => s?.aborted));
      expect(origin.reads.signals).not.toContain(ac.signal);
      // The next reader gets a fresh fill, and every byte.
      origin.reads.open();
      expect(Buffer.compare(Buffer.from((await stack.read('m'))!), Buffer.from(bytes))).toBe(0);
    },
  );

  it('two readers of one key: aborting one leaves the other byte-exact, and the fill goes on', async () => {
    const { origin, originMem, stack, bytes, cache } = gated();
    await originMem.write('m', bytes);
    const ac = new AbortController();
    const target = new Uint8Array(bytes.byteLength);
    const a = stack.read('m', { signal: ac.signal });
    const b = stack.readInto('m', target);
    await until(() => origin.reads.signals.length > 0);
    ac.abort();
    expect(isTierError(await a.catch((e: unknown) => e), 'ABORTED')).toBe(true);
    // B still wants the fill: nothing of it was cancelled.
    expect(origin.reads.signals.some((s) => s?.aborted)).toBe(false);
    origin.reads.open();
    expect(await b).toBe(bytes.byteLength);
    expect(Buffer.compare(Buffer.from(target), Buffer.from(bytes))).toBe(0);
    expect(await cache.read('m')).toEqual(bytes); // published whole
  });

  it('a shared revalidation does not run under the first reader’s signal', async () => {
    const { origin, originMem, stack, bytes } = gated();
    await originMem.write('m', bytes);
    origin.reads.open();
    origin.gateStats = true;
    const ac = new AbortController();
    const a = stack.read('m', { signal: ac.signal });
    const b = stack.read('m');
    await until(() => origin.stats.signals.length > 0);
    ac.abort();
    expect(isTierError(await a.catch((e: unknown) => e), 'ABORTED')).toBe(true);
    expect(origin.stats.signals[0]).toBeUndefined();
    origin.stats.open();
    expect(await b).toEqual(bytes);
  });

  it('a partial open does not run under the first reader’s signal', async () => {
    const cache = new GatedOpens({ name: 'cache' });
    const { origin, originMem, stack, bytes } = gated(cache);
    await originMem.write('m', bytes);
    origin.reads.open();
    const ac = new AbortController();
    const a = stack.read('m', { signal: ac.signal });
    const b = stack.read('m', { range: { offset: 100, length: 5000 } });
    await until(() => cache.opens.signals.length > 0);
    ac.abort();
    expect(isTierError(await a.catch((e: unknown) => e), 'ABORTED')).toBe(true);
    expect(cache.opens.signals).toEqual([undefined]);
    cache.opens.open();
    expect(await b).toEqual(bytes.subarray(100, 5100));
  });

  it('close() waits for fills that readers abandoned', async () => {
    const cache = new CountingCloses({ name: 'cache' });
    const { origin, originMem, stack, bytes } = gated(cache);
    await originMem.write('m', bytes);
    const ac = new AbortController();
    const p = stack.read('m', { signal: ac.signal });
    await until(() => origin.reads.signals.length > 0);
    ac.abort();
    await p.catch(() => undefined);
    // The abandoned fill winds down in the background (its reads abort, then its entry closes):
    // close() resolves only once that is done.
    await stack.close();
    expect(cache.closed).toBe(1);
    expect(origin.reads.signals.every((s) => s?.aborted)).toBe(true);
  });
});
