import * as vitest from 'vitest';
import { describe, expect, it } from 'vitest';
import { isTierError, TierError } from '../errors.js';
import { MemoryTier } from '../memory.js';
import { patternBytes, runTierConformance } from '../testing/index.js';
import type { ObjectMeta, OpOptions, ReadOptions } from '../tier.js';
import { DelegatingTier } from './delegate.js';
import { type MetricsTier, withMetrics } from './metrics.js';
import { withRetry } from './retry.js';
import { withSingleFlight } from './single-flight.js';

runTierConformance(vitest, {
  name: 'retry(memory)',
  create: () => ({ tier: withRetry({ baseDelayMs: 1 })(new MemoryTier()) }),
});
runTierConformance(vitest, {
  name: 'single-flight(memory)',
  create: () => ({ tier: withSingleFlight()(new MemoryTier()) }),
});
runTierConformance(vitest, {
  name: 'metrics(memory)',
  create: () => ({ tier: withMetrics()(new MemoryTier()) }),
});

/** Counts inner reads and fails the first `failures` calls with the given error. */
class Flaky extends DelegatingTier {
  calls = 0;
  constructor(
    inner: MemoryTier,
    private failures: number,
    private readonly error: () => Error = () => new TierError('UNAVAILABLE', 'flaky'),
    private readonly delayMs = 0,
  ) {
    super(inner);
  }
  override async read(key: string, options?: ReadOptions) {
    this.calls++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failures > 0) {
      this.failures--;
      throw this.error();
    }
    return this.inner.read(key, options);
  }
  override async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    this.calls++;
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    return this.inner.stat(key, options);
  }
}

describe('withRetry', () => {
  it('retries retryable errors and then succeeds', async () => {
    const mem = new MemoryTier();
    await mem.write('k', patternBytes(10));
    const flaky = new Flaky(mem, 2);
    const retries: number[] = [];
    const tier = withRetry({ attempts: 3, baseDelayMs: 1, onRetry: (i) => retries.push(i.attempt) })(flaky);
    expect(await tier.read('k')).toEqual(patternBytes(10));
    expect(flaky.calls).toBe(3);
    expect(retries).toEqual([1, 2]);
  });

  it('gives up after the configured attempts with the last error', async () => {
    const mem = new MemoryTier();
    await mem.write('k', patternBytes(10));
    const flaky = new Flaky(mem, 10);
    const err = await withRetry({ attempts: 3, baseDelayMs: 1 })(flaky)
      .read('k')
      .catch((e) => e);
    expect(isTierError(err, 'UNAVAILABLE')).toBe(true);
    expect(flaky.calls).toBe(3);
  });

  it('does not retry errors that are not retryable', async () => {
    const mem = new MemoryTier();
    await mem.write('k', patternBytes(10));
    const flaky = new Flaky(mem, 1, () => new TierError('INTEGRITY', 'bad bytes'));
    const err = await withRetry({ baseDelayMs: 1 })(flaky)
      .read('k')
      .catch((e) => e);
    expect(isTierError(err, 'INTEGRITY')).toBe(true);
    expect(flaky.calls).toBe(1);
  });

  it('stops waiting when aborted during backoff', async () => {
    const mem = new MemoryTier();
    await mem.write('k', patternBytes(10));
    const flaky = new Flaky(mem, 10);
    const ac = new AbortController();
    const p = withRetry({ attempts: 10, baseDelayMs: 10_000, random: () => 1 })(flaky).read('k', {
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(), 20);
    const err = await p.catch((e) => e);
    expect(isTierError(err, 'ABORTED')).toBe(true);
    expect(flaky.calls).toBe(1);
  });

  it('refuses a nonsensical configuration', () => {
    expect(() => withRetry({ attempts: 0 })).toThrow(/attempts/);
  });
});

describe('withSingleFlight', () => {
  it('shares one inner read among concurrent identical reads', async () => {
    const mem = new MemoryTier();
    const bytes = patternBytes(1000);
    await mem.write('k', bytes);
    const counted = new Flaky(mem, 0, undefined, 20);
    const tier = withSingleFlight()(counted);
    const results = await Promise.all(Array.from({ length: 8 }, () => tier.read('k')));
    expect(counted.calls).toBe(1);
    expect(tier.shared).toBe(7);
    for (const r of results) expect(r).toEqual(bytes);
    // Each caller owns its result: changing one leaves the others alone.
    results[0]!.fill(0);
    expect(results[1]).toEqual(bytes);
    // Different ranges are different reads.
    await Promise.all([tier.read('k', { range: { offset: 0, length: 1 } }), tier.read('k')]);
    expect(counted.calls).toBe(3);
  });

  it('shares readInto and copies into every caller’s buffer', async () => {
    const mem = new MemoryTier();
    const bytes = patternBytes(500, 3);
    await mem.write('k', bytes);
    const tier = withSingleFlight()(mem);
    const targets = [new Uint8Array(500), new Uint8Array(500), new Uint8Array(500)];
    const ns = await Promise.all(targets.map((t) => tier.readInto('k', t)));
    expect(ns).toEqual([500, 500, 500]);
    for (const t of targets) expect(t).toEqual(bytes);
  });

  it('one caller aborting does not cancel the others', async () => {
    const mem = new MemoryTier();
    await mem.write('k', patternBytes(100));
    const tier = withSingleFlight()(new Flaky(mem, 0, undefined, 30));
    const ac = new AbortController();
    const a = tier.read('k', { signal: ac.signal });
    const b = tier.read('k');
    ac.abort();
    expect(isTierError(await a.catch((e) => e), 'ABORTED')).toBe(true);
    expect(await b).toEqual(patternBytes(100));
  });

  it('a read that starts after a write does not join an older read', async () => {
    const mem = new MemoryTier();
    await mem.write('k', patternBytes(100, 1));
    const tier = withSingleFlight()(new Flaky(mem, 0, undefined, 30));
    const before = tier.read('k');
    await tier.write('k', patternBytes(100, 2));
    const after = tier.read('k');
    expect(await after).toEqual(patternBytes(100, 2));
    await before;
  });
});

describe('withMetrics', () => {
  it('counts hits, misses, bytes, errors and latency', async () => {
    const tier = withMetrics()(new MemoryTier({ name: 'hot' })) as MetricsTier;
    await tier.write('a', patternBytes(100));
    await tier.read('a');
    await tier.read('missing');
    await tier.readInto('a', new Uint8Array(40));
    await tier.read('a', { range: { offset: 99, length: 5 } }).catch(() => undefined);
    const stream = await tier.readStream('a');
    for await (const _ of stream!) void _;
    const m = tier.metrics.snapshot();
    expect(m.tier).toBe('hot');
    expect(m.hits).toBe(3);
    expect(m.misses).toBe(1);
    expect(m.bytesRead).toBe(100 + 40 + 100);
    expect(m.writes).toBe(1);
    expect(m.bytesWritten).toBe(100);
    expect(m.errors.INVALID_RANGE).toBe(1);
    expect(m.readLatency.count).toBe(4);
    expect(m.readLatency.buckets.at(-1)).toBe(4);
  });
});
