import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LruPolicy } from './lru.js';

/**
 * The obviously-correct reference: an array of entries, ordered on demand by
 * (lastUsed, sequence of the last insert/touch). Every query is a full scan.
 */
interface RefEntry {
  key: string;
  size: number;
  lastUsed: number;
  seq: number;
  pinned: boolean;
  uses: number;
}

class Reference {
  entries: RefEntry[] = [];
  seq = 0;
  now = 1_000;

  find(key: string) {
    return this.entries.find((e) => e.key === key);
  }
  ordered() {
    return [...this.entries].sort((a, b) => a.lastUsed - b.lastUsed || a.seq - b.seq);
  }
  insert(key: string, size: number, lastUsed?: number) {
    const t = lastUsed ?? this.now;
    const e = this.find(key);
    if (e) Object.assign(e, { size, lastUsed: t, seq: ++this.seq });
    else this.entries.push({ key, size, lastUsed: t, seq: ++this.seq, pinned: false, uses: 0 });
  }
  touch(key: string, at?: number) {
    const e = this.find(key);
    if (e) Object.assign(e, { lastUsed: at ?? this.now, seq: ++this.seq });
  }
  remove(key: string) {
    this.entries = this.entries.filter((e) => e.key !== key);
  }
  victims(bytes: number) {
    const out: string[] = [];
    let freed = 0;
    for (const e of this.ordered()) {
      if (freed >= bytes) break;
      if (e.pinned || e.uses > 0) continue;
      out.push(e.key);
      freed += e.size;
    }
    return out;
  }
  idle(ms: number, at?: number) {
    const cutoff = (at ?? this.now) - ms;
    return this.ordered()
      .filter((e) => e.lastUsed < cutoff && !e.pinned && e.uses === 0)
      .map((e) => e.key);
  }
}

type Model = { ref: Reference };
type Real = { lru: LruPolicy; setNow: (t: number) => void };

function checkTotals(m: Model, r: Real) {
  expect(r.lru.count).toBe(m.ref.entries.length);
  expect(r.lru.totalBytes).toBe(m.ref.entries.reduce((s, e) => s + e.size, 0));
}

class InsertCmd implements fc.Command<Model, Real> {
  constructor(
    readonly key: string,
    readonly size: number,
    readonly at?: number,
  ) {}
  check = () => true;
  run(m: Model, r: Real) {
    m.ref.insert(this.key, this.size, this.at);
    r.lru.insert(this.key, this.size, this.at);
    checkTotals(m, r);
  }
  toString = () => `insert(${this.key}, ${this.size}, ${this.at})`;
}

class TouchCmd implements fc.Command<Model, Real> {
  constructor(
    readonly key: string,
    readonly at?: number,
  ) {}
  check = () => true;
  run(m: Model, r: Real) {
    m.ref.touch(this.key, this.at);
    r.lru.touch(this.key, this.at);
  }
  toString = () => `touch(${this.key}, ${this.at})`;
}

class RemoveCmd implements fc.Command<Model, Real> {
  constructor(readonly key: string) {}
  check = () => true;
  run(m: Model, r: Real) {
    m.ref.remove(this.key);
    r.lru.remove(this.key);
    checkTotals(m, r);
  }
  toString = () => `remove(${this.key})`;
}

class FlagCmd implements fc.Command<Model, Real> {
  constructor(
    readonly op: 'pin' | 'unpin' | 'acquire' | 'release',
    readonly key: string,
  ) {}
  check = () => true;
  run(m: Model, r: Real) {
    const e = m.ref.find(this.key);
    if (e) {
      if (this.op === 'pin') e.pinned = true;
      else if (this.op === 'unpin') e.pinned = false;
      else if (this.op === 'acquire') e.uses++;
      else if (e.uses > 0) e.uses--;
    }
    r.lru[this.op](this.key);
    const got = r.lru.get(this.key);
    expect(got && { pinned: got.pinned, inUse: got.inUse }).toEqual(
      e && { pinned: e.pinned, inUse: e.uses > 0 },
    );
  }
  toString = () => `${this.op}(${this.key})`;
}

class AdvanceCmd implements fc.Command<Model, Real> {
  constructor(readonly by: number) {}
  check = () => true;
  run(m: Model, r: Real) {
    m.ref.now += this.by;
    r.setNow(m.ref.now);
  }
  toString = () => `advance(${this.by})`;
}

class VictimsCmd implements fc.Command<Model, Real> {
  constructor(readonly bytes: number) {}
  check = () => true;
  run(m: Model, r: Real) {
    const got = r.lru.victims(this.bytes);
    expect(got).toEqual(m.ref.victims(this.bytes));
    for (const k of got) {
      const e = r.lru.get(k)!;
      expect(e.pinned || e.inUse).toBe(false);
    }
  }
  toString = () => `victims(${this.bytes})`;
}

class IdleCmd implements fc.Command<Model, Real> {
  constructor(
    readonly ms: number,
    readonly at?: number,
  ) {}
  check = () => true;
  run(m: Model, r: Real) {
    expect(r.lru.idle(this.ms, this.at)).toEqual(m.ref.idle(this.ms, this.at));
  }
  toString = () => `idle(${this.ms}, ${this.at})`;
}

class EntriesCmd implements fc.Command<Model, Real> {
  check = () => true;
  run(m: Model, r: Real) {
    const want = m.ref.ordered().map((e) => ({
      key: e.key,
      size: e.size,
      lastUsed: e.lastUsed,
      pinned: e.pinned,
      inUse: e.uses > 0,
    }));
    expect([...r.lru.entries()]).toEqual(want);
    const stats = r.lru.stats();
    expect(stats.pinnedCount).toBe(want.filter((e) => e.pinned).length);
    expect(stats.inUseCount).toBe(want.filter((e) => e.inUse).length);
    expect(stats.evictableBytes).toBe(
      want.filter((e) => !e.pinned && !e.inUse).reduce((s, e) => s + e.size, 0),
    );
    expect(new Set(r.lru.pinnedKeys())).toEqual(new Set(want.filter((e) => e.pinned).map((e) => e.key)));
  }
  toString = () => 'entries()';
}

/**
 * Commands over `keyCount` keys. Explicit times are drawn around the fake clock
 * (1000 onward), so inserts and touches land in the past, in the future and on
 * ties with other entries.
 */
function commands(keyCount: number, maxCommands: number) {
  const key = fc.integer({ min: 0, max: keyCount - 1 }).map((i) => `k${i}`);
  const time = fc.option(fc.integer({ min: 900, max: 1_300 }), { nil: undefined });
  return fc.commands(
    [
      fc.tuple(key, fc.integer({ min: 0, max: 100 }), time).map(([k, s, t]) => new InsertCmd(k, s, t)),
      fc.tuple(key, fc.integer({ min: 0, max: 100 }), time).map(([k, s, t]) => new InsertCmd(k, s, t)),
      fc.tuple(key, time).map(([k, t]) => new TouchCmd(k, t)),
      key.map((k) => new RemoveCmd(k)),
      fc
        .tuple(fc.constantFrom('pin', 'unpin', 'acquire', 'release') as fc.Arbitrary<FlagCmd['op']>, key)
        .map(([op, k]) => new FlagCmd(op, k)),
      fc.integer({ min: 0, max: 20 }).map((d) => new AdvanceCmd(d)),
      fc.integer({ min: 0, max: 400 }).map((b) => new VictimsCmd(b)),
      fc.tuple(fc.integer({ min: 0, max: 300 }), time).map(([ms, t]) => new IdleCmd(ms, t)),
      fc.constant(new EntriesCmd()),
    ],
    { maxCommands, size: 'max' },
  );
}

describe('LruPolicy against a reference model', () => {
  it('matches on random op sequences over few keys (collisions, ties, pins, uses)', () => {
    fc.assert(
      fc.property(commands(6, 80), (cmds) => {
        let now = 1_000;
        const ref = new Reference();
        const real: Real = {
          lru: new LruPolicy({ clock: () => now, initialCapacity: 2 }),
          setNow: (t) => {
            now = t;
          },
        };
        fc.modelRun(() => ({ model: { ref }, real }), cmds);
        new EntriesCmd().run({ ref }, real);
      }),
      { numRuns: 3_000 },
    );
  });

  it('matches on longer sequences over many keys (out-of-order walks give up and resort)', () => {
    // A prefill of a few hundred entries in random time order makes the in-place
    // walks (64 steps from each end) give up, so the lazy full sort runs between commands.
    const prefill = fc.array(fc.integer({ min: 900, max: 1_300 }), { minLength: 150, maxLength: 300 });
    fc.assert(
      fc.property(prefill, commands(300, 300), (times, cmds) => {
        let now = 1_000;
        const ref = new Reference();
        const real: Real = {
          lru: new LruPolicy({ clock: () => now, initialCapacity: 1 }),
          setNow: (t) => {
            now = t;
          },
        };
        times.forEach((t, i) => {
          ref.insert(`k${i}`, i % 97, t);
          real.lru.insert(`k${i}`, i % 97, t);
        });
        fc.modelRun(() => ({ model: { ref }, real }), cmds);
        new EntriesCmd().run({ ref }, real);
      }),
      { numRuns: 300 },
    );
  });

  it('bulk inserts in any time order come out sorted by time, ties in insert order', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 400 }), (times) => {
        const p = new LruPolicy();
        const ref = new Reference();
        times.forEach((t, i) => {
          p.insert(`k${i}`, 1, t);
          ref.insert(`k${i}`, 1, t);
        });
        expect([...p.entries()].map((e) => e.key)).toEqual(ref.ordered().map((e) => e.key));
        expect(p.idle(0, 25)).toEqual(ref.idle(0, 25));
      }),
      { numRuns: 500 },
    );
  });
});
