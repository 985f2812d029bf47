import { isTierError, MapLruPolicy, type Policy } from '@tierkit/tier-core';
import { describe, expect, it } from 'vitest';
import { LruPolicy } from './lru.js';
import { purgeIdle } from './purge.js';

function fakeClock(start = 1_000) {
  let t = start;
  const clock = () => t;
  return {
    clock,
    set: (v: number) => {
      t = v;
    },
    advance: (d: number) => {
      t += d;
    },
  };
}

const keysOf = (p: Policy) => [...p.entries()].map((e) => e.key);

function expectInvalid(fn: () => unknown) {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(isTierError(thrown, 'INVALID_ARGUMENT')).toBe(true);
}

describe('LruPolicy', () => {
  it('tracks count and bytes across insert, replace and remove', () => {
    const p = new LruPolicy();
    p.insert('a', 10);
    p.insert('b', 20);
    expect([p.count, p.totalBytes]).toEqual([2, 30]);
    p.insert('a', 5); // replace
    expect([p.count, p.totalBytes]).toEqual([2, 25]);
    p.remove('b');
    p.remove('b'); // idempotent
    p.remove('nope');
    expect([p.count, p.totalBytes]).toEqual([1, 5]);
    expect(p.has('a')).toBe(true);
    expect(p.has('b')).toBe(false);
    expect(p.get('b')).toBeUndefined();
  });

  it('orders entries least recently used first and moves touched ones to the end', () => {
    const c = fakeClock();
    const p = new LruPolicy({ clock: c.clock });
    for (const k of ['a', 'b', 'c', 'd']) {
      p.insert(k, 1);
      c.advance(1);
    }
    p.touch('b');
    p.touch('unknown');
    expect(keysOf(p)).toEqual(['a', 'c', 'd', 'b']);
    p.insert('a', 2); // re-insert refreshes
    expect(keysOf(p)).toEqual(['c', 'd', 'b', 'a']);
    expect(p.get('a')).toEqual({ key: 'a', size: 2, lastUsed: 1004, pinned: false, inUse: false });
  });

  it('chooses victims from the LRU end until enough bytes are freed', () => {
    const c = fakeClock();
    const p = new LruPolicy({ clock: c.clock });
    p.insert('a', 100);
    c.advance(1);
    p.insert('b', 50);
    c.advance(1);
    p.insert('c', 10);
    expect(p.victims(0)).toEqual([]);
    expect(p.victims(1)).toEqual(['a']);
    expect(p.victims(100)).toEqual(['a']);
    expect(p.victims(101)).toEqual(['a', 'b']);
    expect(p.victims(1e12)).toEqual(['a', 'b', 'c']);
    expect(p.count).toBe(3); // victims never removes
  });

  it('never chooses pinned or in-use entries, and acquire/release nest', () => {
    const c = fakeClock();
    const p = new LruPolicy({ clock: c.clock });
    for (const k of ['a', 'b', 'c']) {
      p.insert(k, 10);
      c.advance(1);
    }
    p.pin('a');
    p.acquire('b');
    p.acquire('b');
    expect(p.victims(1000)).toEqual(['c']);
    expect(p.get('a')?.pinned).toBe(true);
    expect(p.get('b')?.inUse).toBe(true);
    p.release('b');
    expect(p.victims(1000)).toEqual(['c']);
    p.release('b');
    p.release('b'); // extra release is ignored
    expect(p.victims(1000)).toEqual(['b', 'c']);
    p.unpin('a');
    expect(p.victims(1000)).toEqual(['a', 'b', 'c']);
    expect(p.pinnedKeys()).toEqual([]);
  });

  it('keeps pin and use counts when an entry is re-inserted', () => {
    const p = new LruPolicy();
    p.insert('a', 10);
    p.pin('a');
    p.acquire('a');
    p.insert('a', 30);
    expect(p.get('a')).toMatchObject({ size: 30, pinned: true, inUse: true });
    expect(p.stats()).toMatchObject({ pinnedBytes: 30, evictableBytes: 0, inUseCount: 1 });
    p.unpin('a');
    p.release('a');
    expect(p.stats()).toMatchObject({ pinnedBytes: 0, evictableBytes: 30, inUseCount: 0 });
  });

  it('counts more than 65535 nested acquires correctly', () => {
    const p = new LruPolicy();
    p.insert('a', 1);
    const n = 70_000;
    for (let i = 0; i < n; i++) p.acquire('a');
    for (let i = 0; i < n - 1; i++) p.release('a');
    expect(p.get('a')?.inUse).toBe(true);
    expect(p.victims(1)).toEqual([]);
    p.release('a');
    expect(p.get('a')?.inUse).toBe(false);
    expect(p.victims(1)).toEqual(['a']);
  });

  it('returns idle entries only, oldest first, skipping pinned and in-use ones', () => {
    const c = fakeClock(0);
    const p = new LruPolicy({ clock: c.clock });
    p.insert('old1', 1, 100);
    p.insert('old2', 1, 200);
    p.insert('pinned', 1, 150);
    p.insert('reading', 1, 160);
    p.insert('fresh', 1, 10_000);
    p.pin('pinned');
    p.acquire('reading');
    expect(p.idle(1000, 5_000)).toEqual(['old1', 'old2']);
    expect(p.idle(1000, 1_200)).toEqual(['old1']); // 200 is not idle *longer* than 1000 at 1200
    expect(p.idle(0, 100)).toEqual([]);
    c.set(20_000);
    expect(p.idle(5_000)).toEqual(['old1', 'old2', 'fresh']);
    expectInvalid(() => p.idle(-1));
    expectInvalid(() => p.idle(Number.NaN));
  });

  it('keeps the list ordered by lastUsed when inserting entries with older times', () => {
    const p = new LruPolicy({ clock: () => 1_000_000 });
    p.insert('t50', 1, 50);
    p.insert('t10', 1, 10);
    p.insert('t30', 1, 30);
    p.insert('t30b', 1, 30); // a tie goes after the earlier one
    p.insert('t5', 1, 5);
    p.insert('t99', 1, 99);
    p.touch('t10', 40);
    expect(keysOf(p)).toEqual(['t5', 't30', 't30b', 't10', 't50', 't99']);
    expect(p.idle(0, 35)).toEqual(['t5', 't30', 't30b']);
  });

  it('sorts once after a bulk load in random time order (walks give up)', () => {
    const p = new LruPolicy({ initialCapacity: 2 });
    const n = 5_000;
    const times = Array.from({ length: n }, (_, i) => i);
    // deterministic shuffle
    let seed = 42;
    for (let i = n - 1; i > 0; i--) {
      seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
      const j = seed % (i + 1);
      [times[i], times[j]] = [times[j], times[i]];
    }
    for (const t of times) p.insert(`k${t}`, 1, t);
    expect(p.idle(0, 3)).toEqual(['k0', 'k1', 'k2']);
    const all = [...p.entries()].map((e) => e.lastUsed);
    expect(all).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(p.stats().capacity).toBeGreaterThanOrEqual(n);
  });

  it('does not reorder when the clock steps back', () => {
    const c = fakeClock(10_000);
    const p = new LruPolicy({ clock: c.clock });
    p.insert('a', 1);
    c.set(5_000);
    p.insert('b', 1);
    expect(keysOf(p)).toEqual(['a', 'b']);
    expect(p.get('b')?.lastUsed).toBe(10_000);
  });

  it('reuses freed slots and keeps working after many removes', () => {
    const p = new LruPolicy({ initialCapacity: 4 });
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 100; i++) p.insert(`k${i}`, i, round * 1000 + i);
      for (let i = 0; i < 100; i += 2) p.remove(`k${i}`);
      expect(p.count).toBe(50);
    }
    expect(p.stats().capacity).toBeLessThan(256);
    expect(keysOf(p)).toEqual(Array.from({ length: 50 }, (_, i) => `k${2 * i + 1}`));
  });

  it('lets entries() callers remove or touch what they iterate', () => {
    const c = fakeClock();
    const p = new LruPolicy({ clock: c.clock });
    for (const k of ['a', 'b', 'c', 'd']) {
      p.insert(k, 1);
      c.advance(1);
    }
    const seen: string[] = [];
    for (const e of p.entries()) {
      seen.push(e.key);
      if (e.key === 'a') p.remove('b');
      p.touch(e.key);
    }
    expect(seen).toEqual(['a', 'c', 'd']);
  });

  it('reports overBy, fits, pinned keys and stats', () => {
    const p = new LruPolicy({ maxBytes: 100 });
    p.insert('a', 60);
    p.insert('b', 30);
    p.pin('b');
    expect(p.overBy()).toBe(0);
    expect(p.overBy(20)).toBe(10);
    expect(p.fits(10)).toBe(true);
    expect(p.fits(11)).toBe(false);
    expect(p.pinnedKeys()).toEqual(['b']);
    expect(p.stats()).toMatchObject({
      count: 2,
      totalBytes: 90,
      maxBytes: 100,
      pinnedCount: 1,
      pinnedBytes: 30,
      evictableBytes: 60,
    });
    expect(p.victims(p.overBy(20))).toEqual(['a']);
    expect(new LruPolicy().overBy(1e15)).toBe(0);
    p.maxBytes = 50;
    expect(p.overBy()).toBe(40);
  });

  it('clear forgets everything and the policy stays usable', () => {
    const p = new LruPolicy({ initialCapacity: 1 });
    for (let i = 0; i < 10; i++) p.insert(`k${i}`, 1);
    p.pin('k1');
    p.acquire('k2');
    p.clear();
    expect([p.count, p.totalBytes, p.pinnedKeys().length, p.stats().inUseCount]).toEqual([0, 0, 0, 0]);
    p.insert('x', 3);
    expect(keysOf(p)).toEqual(['x']);
    expect(p.victims(1)).toEqual(['x']);
  });

  it('rejects bad sizes, times and options with INVALID_ARGUMENT and changes nothing', () => {
    const p = new LruPolicy();
    p.insert('a', 1);
    for (const size of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '3' as unknown as number]) {
      expectInvalid(() => p.insert('a', size));
    }
    expectInvalid(() => p.insert('b', 1, Number.NaN));
    expectInvalid(() => p.touch('a', Number.POSITIVE_INFINITY));
    expectInvalid(() => new LruPolicy({ maxBytes: -1 }));
    expectInvalid(() => new LruPolicy({ initialCapacity: 0 }));
    expectInvalid(() => new LruPolicy({ clock: () => Number.NaN }).insert('a', 1));
    expect([p.count, p.totalBytes, p.has('b')]).toEqual([1, 1, false]);
  });

  it('purgeIdle takes durations and works with any Policy', () => {
    const day = 86_400_000;
    for (const p of [new LruPolicy(), new MapLruPolicy()] as Policy[]) {
      p.insert('weekOld', 1, 0);
      p.insert('dayOld', 1, 6 * day);
      p.insert('pinned', 1, 0);
      p.pin('pinned');
      expect(purgeIdle(p, '1w', 8 * day)).toEqual(['weekOld']);
      expect(purgeIdle(p, '1d', 8 * day)).toEqual(['weekOld', 'dayOld']);
      expect(purgeIdle(p, 2 * day, 8 * day)).toEqual(['weekOld']);
      expectInvalid(() => purgeIdle(p, '1 week', 8 * day));
    }
  });
});
