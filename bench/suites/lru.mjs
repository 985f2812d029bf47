// LRU eviction index at a million entries: heap bytes per entry and ns per
// operation for @tierkit/policy-lru's LruPolicy, tier-core's MapLruPolicy and,
// when it is installed, the lru-cache package (the usual pick for an LRU in Node).
import { loadavg } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LruPolicy } from '@tierkit/policy-lru';
import { MapLruPolicy } from '@tierkit/tier-core';
import { fmt, summarize } from '../stats.mjs';

export const name = 'lru';
export const title = 'LRU policy: memory and speed at a million entries';

const ENTRY_SIZE = 32 * 1024 * 1024; // a KV-cache chunk; only the bookkeeping matters here
const CHURN_BUDGET_MS = 15_000;

/** A real collection when possible: `--expose-gc`, else V8's flag set at run time, else none. */
function findGc() {
  if (typeof globalThis.gc === 'function') return { gc: globalThis.gc, how: 'global.gc (--expose-gc)' };
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc');
    if (typeof gc === 'function') return { gc, how: 'gc exposed at run time (v8.setFlagsFromString)' };
  } catch {}
  return { gc: () => {}, how: 'none: memory figures include garbage and are approximate' };
}

// Keys built by concatenation are V8 cons strings (about 130 bytes each at this
// length); keys read from disk or the network are flat (about 80). Decode from
// bytes so the benchmark holds flat keys, as a real tier would.
function makeKey(i) {
  const s = `models/llama-3-8b/model-0000${(i % 4) + 1}-of-00004.safetensors#${i}`;
  return Buffer.from(s, 'latin1').toString('latin1');
}

function shuffled(n, seed) {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  let x = seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}

function now() {
  return process.hrtime.bigint();
}
function nsPer(t0, ops) {
  return Number(process.hrtime.bigint() - t0) / ops;
}

/** Each subject maps the benchmark's operations onto one implementation. */
function policySubject(label, make) {
  return {
    label,
    make,
    insert: (p, k, t) => p.insert(k, ENTRY_SIZE, t),
    touch: (p, k) => p.touch(k),
    remove: (p, k) => p.remove(k),
    evictOne: (p) => {
      for (const k of p.victims(1)) p.remove(k);
    },
    idle: (p, idleMs, at) => p.idle(idleMs, at).length,
  };
}

async function lruCacheSubject() {
  let LRUCache;
  try {
    ({ LRUCache } = await import('lru-cache'));
  } catch {
    return undefined;
  }
  return {
    label: 'lru-cache',
    make: () =>
      new LRUCache({ max: 2 ** 31 - 1, maxSize: Number.MAX_SAFE_INTEGER, sizeCalculation: () => ENTRY_SIZE }),
    insert: (c, k) => c.set(k, 1),
    touch: (c, k) => c.get(k),
    remove: (c, k) => c.delete(k),
    evictOne: (c) => c.pop(),
    idle: undefined, // no scan of entries unused for a while (ttl expires entries instead)
  };
}

export default async function run(ctx) {
  const n = ctx.quick ? 100_000 : 1_000_000;
  const runs = ctx.quick ? 2 : 3;
  const churn = Math.min(n, 200_000);
  const idleCount = 100;
  const { gc, how } = findGc();
  const heap = () => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };

  ctx.log(`building ${n} keys (+${churn} for churn)…`);
  const before = heap();
  const keys = Array.from({ length: n }, (_, i) => makeKey(i));
  const keyBytes = (heap() - before) / n;
  const fresh = Array.from({ length: churn }, (_, i) => makeKey(n + i));
  const order = shuffled(n, 12345);
  const keyChars = keys.reduce((s, k) => s + k.length, 0) / n;

  const subjects = [
    policySubject('LruPolicy (@tierkit/policy-lru)', () => new LruPolicy()),
    policySubject('MapLruPolicy (tier-core)', () => new MapLruPolicy()),
  ];
  const lc = await lruCacheSubject();
  if (lc) subjects.push(lc);
  const t0 = Date.now() - 10 * n; // lastUsed t0 + i: entry i is i ms newer than entry 0
  const churnCut = new Set();

  /** One pass over every operation on a fresh index of `size` entries; returns ns (µs for idle). */
  function pass(sub, size, churnN) {
    const out = {};
    let p = sub.make();
    let t = now();
    for (let i = 0; i < size; i++) sub.insert(p, keys[i], t0 + i);
    out.insert = nsPer(t, size);

    if (sub.idle) {
      // Only the oldest `idleCount` entries are idle: a purge check on a healthy cache.
      const calls = 20;
      t = now();
      let found = 0;
      for (let c = 0; c < calls; c++) found = sub.idle(p, size - idleCount, t0 + size);
      out.idle = nsPer(t, calls) / 1e3;
      if (found !== idleCount) throw new Error(`${sub.label}: idle found ${found}, expected ${idleCount}`);
    }

    // Every key once, in random order (in the smaller warm-up most of them miss).
    t = now();
    for (let i = 0; i < n; i++) sub.touch(p, keys[order[i]]);
    out.touch = nsPer(t, n);

    // Steady state of a full cache: each new entry evicts the least recently used one.
    // Time-boxed: an index whose eviction degrades with history would otherwise stall the suite.
    t = now();
    const deadline = Date.now() + CHURN_BUDGET_MS;
    let done = 0;
    while (done < churnN) {
      const stop = Math.min(churnN, done + 1000);
      for (; done < stop; done++) {
        sub.insert(p, fresh[done], undefined);
        sub.evictOne(p);
      }
      if (Date.now() > deadline) break;
    }
    out.churn = nsPer(t, done);
    if (done < churnN) churnCut.add(sub.label);
    for (let i = 0; i < done; i++) sub.remove(p, fresh[i]);

    t = now();
    for (let i = 0; i < n; i++) sub.remove(p, keys[order[i]]);
    out.remove = nsPer(t, n);
    p = undefined;
    heap();
    return out;
  }

  const results = new Map();
  for (const sub of subjects) {
    ctx.log(`${sub.label}: memory`);
    const m0 = heap();
    let p = sub.make();
    for (let i = 0; i < n; i++) sub.insert(p, keys[i], t0 + i);
    const bytesPerEntry = (heap() - m0) / n;
    const typed = p instanceof LruPolicy ? p.stats().typedArrayBytes / n : undefined;
    p = undefined;
    heap();
    results.set(sub, { bytesPerEntry, typed, samples: [] });
  }
  // A warm-up pass at a tenth of the size lets the JIT settle; then the runs, with the
  // implementations interleaved so that load from other processes hits them alike.
  for (const sub of subjects) {
    ctx.log(`${sub.label}: warm-up`);
    pass(sub, Math.ceil(n / 10), Math.ceil(churn / 10));
  }
  churnCut.clear();
  for (let r = 0; r < runs; r++) {
    for (const sub of subjects) {
      ctx.log(`${sub.label}: run ${r + 1}/${runs}`);
      results.get(sub).samples.push(pass(sub, n, churn));
    }
  }

  const rows = subjects.map((sub) => {
    const { bytesPerEntry, typed, samples } = results.get(sub);
    const med = (field) => {
      const xs = samples.map((x) => x[field]).filter((x) => x !== undefined);
      return xs.length ? summarize(xs).median : Number.NaN;
    };
    return {
      implementation: sub.label,
      bytesPerEntry,
      bytesPerEntryWithKey: bytesPerEntry + keyBytes,
      typedArrayBytesPerEntry: typed,
      nsInsert: med('insert'),
      nsTouch: med('touch'),
      nsInsertPlusEvict: med('churn'),
      nsRemove: med('remove'),
      usIdleScan: med('idle'),
    };
  });

  const table = [
    '| implementation | index B/entry | with key string | insert ns | touch ns | insert + evict LRU ns | remove ns | idle() µs (100 idle) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.implementation} | ${fmt(r.bytesPerEntry, 0)} | ${fmt(r.bytesPerEntryWithKey, 0)} | ${fmt(r.nsInsert, 0)} | ${fmt(r.nsTouch, 0)} | ${fmt(r.nsInsertPlusEvict, 0)} | ${fmt(r.nsRemove, 0)} | ${Number.isFinite(r.usIdleScan) ? fmt(r.usIdleScan, 1) : 'n/a'} |`,
    ),
  ].join('\n');

  const lruTyped = rows[0].typedArrayBytesPerEntry;
  const notes = [
    `- ${n.toLocaleString('en-US')} entries; keys like \`${keys[1]}\`, ${fmt(keyChars, 1)} characters on average, flat one-byte strings of ${fmt(keyBytes, 0)} heap bytes each (counted in "with key string", not in "index").`,
    `- Memory: heapUsed + arrayBuffers after inserting, minus before; garbage collection: ${how}. LruPolicy's typed arrays account for ${fmt(lruTyped, 1)} B/entry of its figure (capacity doubles, so up to 2× slack right after growth).`,
    `- Load average when the runs ended: ${loadavg()
      .map((x) => fmt(x, 1))
      .join(', ')} on ${ctx.machine?.cpus ?? '?'} CPUs (a loaded machine inflates and scatters the times).`,
    `- Times are medians of ${runs} runs. touch: every key once in random order; insert + evict LRU: ${churn.toLocaleString('en-US')} new entries into the full index, each followed by choosing one victim and removing it; idle(): a scan where only the ${idleCount} oldest entries are idle.`,
    lc
      ? '- lru-cache: `set`/`get`/`delete`/`pop` with a size per entry; it has no idle scan (its ttl expires entries instead).'
      : '- lru-cache is not installed in this workspace, so it was skipped (the suite includes it automatically when `lru-cache` can be imported).',
    ...[...churnCut].map(
      (label) =>
        `- ${label}: insert + evict was stopped after ${CHURN_BUDGET_MS / 1000} s per run (fewer than ${churn.toLocaleString('en-US')} operations): its cost grows with the number of evictions.`,
    ),
    '- Target: at most 200 B of index memory per entry.',
  ].join('\n');

  return {
    markdown: `${table}\n\n${notes}\n`,
    data: {
      entries: n,
      keyChars,
      keyBytes,
      gc: how,
      runs,
      churn,
      churnCut: [...churnCut],
      rows,
      lruCache: Boolean(lc),
    },
  };
}
