import * as vitest from 'vitest';
import { describe, expect, it } from 'vitest';
import { isTierError } from './errors.js';
import { MemoryTier } from './memory.js';
import { runTierConformance } from './testing/index.js';

runTierConformance(vitest, { name: 'memory', create: () => ({ tier: new MemoryTier() }) });

describe('MemoryTier capacity', () => {
  it('evicts the least recently used entries to stay under maxBytes', async () => {
    let now = 0;
    const tier = new MemoryTier({ maxBytes: 100, clock: () => ++now });
    await tier.write('a', new Uint8Array(40));
    await tier.write('b', new Uint8Array(40));
    await tier.read('a');
    await tier.write('c', new Uint8Array(40));
    expect(await tier.stat('b')).toBeUndefined();
    expect(await tier.stat('a')).toBeDefined();
    expect(await tier.stat('c')).toBeDefined();
    expect(tier.size).toBe(80);
  });

  it('never evicts pinned entries and refuses what cannot fit', async () => {
    const tier = new MemoryTier({ maxBytes: 100 });
    await tier.write('keep', new Uint8Array(60));
    tier.pin('keep');
    await tier.write('x', new Uint8Array(40));
    await tier.write('y', new Uint8Array(40));
    expect(await tier.stat('keep')).toBeDefined();
    expect(await tier.stat('x')).toBeUndefined();
    const err = await tier.write('z', new Uint8Array(50)).catch((e) => e);
    expect(isTierError(err, 'CAPACITY')).toBe(true);
    const big = await tier.write('huge', new Uint8Array(101)).catch((e) => e);
    expect(isTierError(big, 'CAPACITY')).toBe(true);
    expect(await tier.stat('y')).toBeDefined();
  });
});
