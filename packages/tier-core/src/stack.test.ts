import * as vitest from 'vitest';
import { describe, expect, it } from 'vitest';
import { isTierError, TierError } from './errors.js';
import { DelegatingTier } from './layers/delegate.js';
import { MemoryTier } from './memory.js';
import { createStack } from './stack.js';
import { patternBytes, runTierConformance } from './testing/index.js';
import type { ObjectMeta, OpOptions } from './tier.js';

runTierConformance(vitest, {
  name: 'stack [memory over memory]',
  create: () => ({
    tier: createStack([new MemoryTier({ name: 'hot' }), new MemoryTier({ name: 'origin' })]),
  }),
});
runTierConformance(vitest, {
  name: 'stack [memory over memory], write-around, ttl validation',
  create: () => ({
    tier: createStack([new MemoryTier({ name: 'hot' }), new MemoryTier({ name: 'origin' })], {
      writeMode: 'around',
      validate: { ttlMs: 0 },
    }),
  }),
});
runTierConformance(vitest, {
  name: 'nested stack [memory over [memory over memory]]',
  create: () => ({
    tier: createStack([
      new MemoryTier({ name: 'l1' }),
      createStack([new MemoryTier({ name: 'l2' }), new MemoryTier({ name: 'origin' })], { name: 'inner' }),
    ]),
  }),
});

/** Counts stats; can be switched off to play a dead origin. */
class Watched extends DelegatingTier {
  stats = 0;
  down = false;
  override async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    this.stats++;
    if (this.down) throw new TierError('UNAVAILABLE', 'origin is down');
    return this.inner.stat(key, options);
  }
}

function setup(options: Parameters<typeof createStack>[1] = {}) {
  const hot = new MemoryTier({ name: 'hot' });
  const warm = new MemoryTier({ name: 'warm' });
  const originMem = new MemoryTier({ name: 'origin' });
  const origin = new Watched(originMem);
  const stack = createStack([hot, warm, origin], options);
  return { hot, warm, originMem, origin, stack };
}

describe('createStack', () => {
  it('reads through, promotes into every tier above, then serves from the top', async () => {
    const { hot, warm, originMem, stack } = setup();
    const bytes = patternBytes(5000, 1);
    await originMem.write('m/a', bytes);
    expect(await stack.read('m/a')).toEqual(bytes);
    expect(await hot.read('m/a')).toEqual(bytes);
    expect(await warm.read('m/a')).toEqual(bytes);
    expect((await hot.stat('m/a'))?.source?.etag).toBe((await originMem.stat('m/a'))?.etag);
    expect(await stack.read('m/a', { range: { offset: 10, length: 5 } })).toEqual(bytes.subarray(10, 15));
    const s = stack.stats();
    expect(s.hitsByTier).toEqual({ hot: 2, warm: 0, origin: 0 });
    expect(s.promotions).toBe(2);
    expect(s.bytesByTier.hot).toBe(5005);
  });

  it('validates on first open only, and invalidates a copy the origin has changed', async () => {
    const { hot, originMem, origin, stack } = setup();
    await originMem.write('k', patternBytes(100, 1));
    await stack.read('k');
    await stack.read('k');
    expect(origin.stats).toBe(1); // one validation, which also located it
    // The origin changes behind the stack's back: a new stack instance revalidates.
    await originMem.write('k', patternBytes(100, 2));
    const again = createStack([hot, new MemoryTier({ name: 'warm' }), origin]);
    expect(await again.read('k')).toEqual(patternBytes(100, 2));
    expect(again.stats().invalidations).toBe(1);
  });

  it('revalidates after the TTL', async () => {
    let now = 0;
    const { originMem, stack } = setup({ validate: { ttlMs: 1000 }, clock: () => now });
    await originMem.write('k', patternBytes(100, 1));
    await stack.read('k');
    await originMem.write('k', patternBytes(100, 2));
    now = 500;
    expect(await stack.read('k')).toEqual(patternBytes(100, 1));
    now = 1500;
    expect(await stack.read('k')).toEqual(patternBytes(100, 2));
  });

  it('drops cached copies of an object deleted at the origin', async () => {
    const { hot, originMem, stack } = setup({ validate: { ttlMs: 0 } });
    await originMem.write('k', patternBytes(10));
    await stack.read('k');
    await originMem.delete('k');
    expect(await stack.read('k')).toBeUndefined();
    expect(await hot.stat('k')).toBeUndefined();
  });

  it('never trusts a cached copy of unknown provenance when validating', async () => {
    const { hot, originMem, stack } = setup();
    await originMem.write('k', patternBytes(10, 1));
    await hot.write('k', patternBytes(10, 9)); // put there by someone else
    expect(await stack.read('k')).toEqual(patternBytes(10, 1));
  });

  it("with validate 'never' serves the cache as it is", async () => {
    const { hot, originMem, origin, stack } = setup({ validate: 'never' });
    await originMem.write('k', patternBytes(10, 1));
    await hot.write('k', patternBytes(10, 9));
    expect(await stack.read('k')).toEqual(patternBytes(10, 9));
    expect(origin.stats).toBe(0);
  });

  it('fails, or with staleIfError serves the cache, when the origin is down', async () => {
    const a = setup({ validate: { ttlMs: 0 } });
    await a.originMem.write('k', patternBytes(10));
    await a.stack.read('k');
    a.origin.down = true;
    expect(isTierError(await a.stack.read('k').catch((e) => e), 'UNAVAILABLE')).toBe(true);

    const b = setup({ validate: { ttlMs: 0 }, staleIfError: true });
    await b.originMem.write('k', patternBytes(10));
    await b.stack.read('k');
    b.origin.down = true;
    expect(await b.stack.read('k')).toEqual(patternBytes(10));
  });

  it('writes through to every tier, or around them', async () => {
    const t = setup();
    await t.stack.write('k', patternBytes(10));
    expect(await t.hot.read('k')).toEqual(patternBytes(10));
    expect(await t.warm.read('k')).toEqual(patternBytes(10));

    const a = setup({ writeMode: 'around' });
    await a.hot.write('k', patternBytes(10, 1));
    await a.stack.write('k', patternBytes(10, 2));
    expect(await a.hot.stat('k')).toBeUndefined();
    expect(await a.originMem.read('k')).toEqual(patternBytes(10, 2));
  });

  it('writes a stream through by filling the caches from the origin', async () => {
    const t = setup();
    async function* gen() {
      yield patternBytes(10, 1);
      yield patternBytes(10, 2);
    }
    await t.stack.write('k', gen());
    const want = new Uint8Array([...patternBytes(10, 1), ...patternBytes(10, 2)]);
    expect(await t.hot.read('k')).toEqual(want);
    expect((await t.hot.stat('k'))?.source?.size).toBe(20);
  });

  it('keeps serving when a promotion does not fit', async () => {
    const hot = new MemoryTier({ name: 'hot', maxBytes: 100 });
    const origin = new MemoryTier({ name: 'origin' });
    const warnings: string[] = [];
    const stack = createStack([hot, origin], { onWarning: (w) => warnings.push(`${w.tier}:${w.op}`) });
    await origin.write('big', patternBytes(1000));
    expect(await stack.read('big')).toEqual(patternBytes(1000));
    expect(stack.stats().promotionFailures).toBe(1);
    expect(stack.stats().hitsByTier.origin).toBe(1);
    expect(warnings).toEqual(['hot:promote']);
  });

  it('promotes once for many concurrent cold readers', async () => {
    const { originMem, stack } = setup();
    await originMem.write('k', patternBytes(100_000));
    const all = await Promise.all(Array.from({ length: 10 }, () => stack.read('k')));
    for (const r of all) expect(r).toEqual(patternBytes(100_000));
    expect(stack.stats().promotions).toBe(2);
  });

  it('fill() copies an object into every tier above the one holding it', async () => {
    const { hot, warm, originMem, stack } = setup();
    await originMem.write('k', patternBytes(300));
    expect((await stack.fill('k'))?.size).toBe(300);
    expect(await hot.read('k')).toEqual(patternBytes(300));
    expect(await warm.read('k')).toEqual(patternBytes(300));
    expect(stack.stats().promotions).toBe(2);
    await stack.fill('k');
    expect(stack.stats().promotions).toBe(2);
  });

  it('refuses bad configurations', () => {
    expect(() => createStack([])).toThrow(/at least one tier/);
    expect(() => createStack([new MemoryTier(), new MemoryTier()])).toThrow(/named 'memory'/);
    expect(() => createStack([new MemoryTier()], { validate: 'sometimes' as never })).toThrow(/validate/);
    expect(() => createStack([new MemoryTier()], { writeMode: 'back' as never })).toThrow(/writeMode/);
  });
});
