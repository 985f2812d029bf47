// Index scale of the fs tier: memory per entry and time per touch / evict of
// its index (LruPolicy, what FsTier uses by default) at 1,000,000 entries, and
// the restart time of an fs tier whose folder holds 100,000 cached entries.
// The full LRU comparison (MapLruPolicy, lru-cache) is suites/lru.mjs.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LruPolicy } from '@tierkit/policy-lru';
import { createFsTier } from '@tierkit/tier-fs';
import { scratchDir } from '../lib/data.mjs';
import { fmt, summarize } from '../stats.mjs';

export const name = 'index-scale';
export const title = 'Index scale: memory and touch/evict at 1,000,000 entries, restart with 100,000 entries';

function findGc() {
  if (typeof globalThis.gc === 'function') return globalThis.gc;
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc');
  } catch {
    return () => {};
  }
}

/** KV-chunk-like keys, flat strings (as read from disk), as a real index holds them. */
function key(i) {
  return Buffer.from(
    `kv/llama-3-8b/ws8/w${i % 8}/${((i * 2654435761) >>> 0).toString(16).padStart(8, '0')}${i.toString(16)}`,
    'latin1',
  ).toString('latin1');
}

function heap(gc) {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

async function indexAtScale(n, log) {
  const gc = findGc();
  const keys = Array.from({ length: n }, (_, i) => key(i));
  const keyBytesBefore = heap(gc);
  const base = heap(gc);
  const policy = new LruPolicy();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) policy.insert(keys[i], 2 * 1024 * 1024, i);
  const insertNs = Number(process.hrtime.bigint() - t0) / n;
  const perEntry = (heap(gc) - base) / n;
  // touch: every key once, in a scrambled order
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = (i * 7919) % n;
  const touches = [];
  for (let r = 0; r < 3; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) policy.touch(keys[order[i]], n + r * n + i);
    touches.push(Number(process.hrtime.bigint() - t) / n);
  }
  // evict: 200,000 inserts into the full index, each followed by choosing and removing one victim
  const churn = Math.min(200_000, n);
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < churn; i++) {
    policy.insert(key(n + i), 2 * 1024 * 1024, 10 * n + i);
    const [v] = policy.victims(1);
    policy.remove(v);
  }
  const evictNs = Number(process.hrtime.bigint() - t1) / churn;
  log(
    `index: ${fmt(perEntry, 0)} B/entry, touch ${fmt(summarize(touches).median, 0)} ns, evict ${fmt(evictNs, 0)} ns`,
  );
  return {
    entries: n,
    bytesPerEntry: perEntry,
    insertNs,
    touchNs: summarize(touches).median,
    insertEvictNs: evictNs,
    keyHeapBefore: keyBytesBefore,
    count: policy.count,
  };
}

async function restart(n, log, quick) {
  const scratch = await scratchDir('index-scale');
  const root = join(scratch.dir, 'cache');
  try {
    // n cached entries as plain files (what a warmed cache folder is), 256 folders.
    for (let d = 0; d < 256; d++)
      await mkdir(join(root, 'kv', d.toString(16).padStart(2, '0')), { recursive: true });
    const chunk = 512;
    for (let i = 0; i < n; i += chunk) {
      await Promise.all(
        Array.from({ length: Math.min(chunk, n - i) }, (_, j) => {
          const k = i + j;
          return writeFile(
            join(root, 'kv', (k & 255).toString(16).padStart(2, '0'), `c${k.toString(16)}`),
            'x',
          );
        }),
      );
    }
    // A first open builds the last-use journal's snapshot, as a running cache would have.
    const first = createFsTier({ root, fsync: false });
    await first.ready;
    if (first.count !== n) throw new Error(`index has ${first.count} entries, expected ${n}`);
    for (let i = 0; i < 1000; i++)
      await first.read(`kv/${(i & 255).toString(16).padStart(2, '0')}/c${i.toString(16)}`);
    await first.close();
    const secs = [];
    for (let r = 0; r < (quick ? 2 : 3); r++) {
      const t0 = process.hrtime.bigint();
      const tier = createFsTier({ root, fsync: false });
      await tier.ready;
      secs.push(Number(process.hrtime.bigint() - t0) / 1e9);
      if (tier.count !== n) throw new Error(`restart found ${tier.count} entries`);
      await tier.close();
    }
    const s = summarize(secs);
    log(`restart with ${n} entries: ${fmt(s.median)} s`);
    return { entries: n, seconds: secs, median: s.median };
  } finally {
    await scratch.cleanup();
  }
}

export default async function indexScale(ctx) {
  const { quick, log } = ctx;
  const n = Number(process.env.BENCH_INDEX_ENTRIES || (quick ? 200_000 : 1_000_000));
  const m = Number(process.env.BENCH_RESTART_ENTRIES || (quick ? 20_000 : 100_000));
  const idx = await indexAtScale(n, log);
  const rs = await restart(m, log, quick);
  const met = idx.bytesPerEntry <= 200;
  const markdown = [
    `The fs tier's index is its eviction policy (LruPolicy from @tierkit/policy-lru by default); this measures it alone at ${n.toLocaleString('en')} entries with KV-chunk keys (flat strings, not counted in the figure), then the restart of a real fs tier over a folder of ${m.toLocaleString('en')} cached files (after a first open wrote the last-use snapshot; the folder is in the page cache). suites/lru.mjs has the full comparison with MapLruPolicy and lru-cache.`,
    '',
    '| figure | value |',
    '| --- | ---: |',
    `| index memory per entry (heapUsed + arrayBuffers, after GC) | ${fmt(idx.bytesPerEntry, 0)} B |`,
    `| insert | ${fmt(idx.insertNs, 0)} ns |`,
    `| touch (every key once, scrambled order; median of 3 passes) | ${fmt(idx.touchNs, 0)} ns |`,
    `| insert + choose victim + remove, full index | ${fmt(idx.insertEvictNs, 0)} ns |`,
    `| restart: \`createFsTier\` → \`ready\` with ${m.toLocaleString('en')} entries (median of ${rs.seconds.length}) | ${fmt(rs.median)} s (${fmt((rs.median / m) * 1e6, 1)} µs/entry) |`,
    '',
    `Target: at most 200 B of index memory per cached entry — **${met ? 'met' : 'not met'}** (${fmt(idx.bytesPerEntry, 0)} B).`,
  ].join('\n');
  return { markdown, data: { index: idx, restart: rs, met } };
}
