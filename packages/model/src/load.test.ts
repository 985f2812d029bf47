import { isTierError } from '@tierkit/tier-core';
import { describe, expect, it } from 'vitest';
import { openModel, rankByteRanges } from './model.js';
import { prewarmRanges } from './prewarm.js';
import { fileOf, memoryWith, same, tensorBytes, WatchedTier } from './test-helpers.js';
import { planGguf, planSafetensors } from './writers.js';

const ticks = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

function tenTensors() {
  return planSafetensors(
    Array.from({ length: 10 }, (_, i) => ({ name: `t${i}`, dtype: 'U8', shape: [1000] })),
  );
}

async function shardedModel() {
  const s1 = planSafetensors([
    { name: 'model.embed.weight', dtype: 'BF16', shape: [32, 16] },
    { name: 'model.layers.0.q.weight', dtype: 'F8_E4M3', shape: [16, 16] },
  ]);
  const s2 = planSafetensors([
    { name: 'model.layers.1.q.weight', dtype: 'F8_E5M2', shape: [16, 16] },
    { name: 'lm_head.weight', dtype: 'F16', shape: [32, 16] },
  ]);
  const weight_map: Record<string, string> = {};
  for (const t of s1.tensors) weight_map[t.name] = 'model-00001-of-00002.safetensors';
  for (const t of s2.tensors) weight_map[t.name] = 'model-00002-of-00002.safetensors';
  const index = { metadata: { total_size: 2048 }, weight_map };
  return {
    files: {
      'llm/model-00001-of-00002.safetensors': fileOf(s1),
      'llm/model-00002-of-00002.safetensors': fileOf(s2),
      'llm/model.safetensors.index.json': new TextEncoder().encode(JSON.stringify(index)),
    },
    index,
  };
}

describe('streaming loads', () => {
  it('streams every tensor in file order, byte-exact, and counts what it read', async () => {
    const plan = tenTensors();
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const events: { file: string; bytes: number; totalBytes: number }[] = [];
    const model = await openModel(tier, 'm.safetensors', { onRead: (e) => events.push(e) });
    const names: string[] = [];
    for await (const t of model.load({ maxBytesInFlight: 2500, pieceBytes: 300 })) {
      names.push(t.name);
      expect(same(t.bytes, tensorBytes(t.name, 1000)), t.name).toBe(true);
    }
    expect(names).toEqual(plan.tensors.map((t) => t.name));
    const s = model.stats();
    expect(s.tensors).toBe(10);
    expect(s.tensorBytes).toBe(10_000);
    // The header probe read the whole small file, then each tensor was read once.
    expect(s.bytesRead).toBe(plan.size + 10_000);
    expect(s.files['m.safetensors']!.bytesRead).toBe(plan.size + 10_000);
    expect(s.requests).toBe(1 + 10 * 4);
    expect(events).toHaveLength(41);
    expect(events.at(-1)!.totalBytes).toBe(plan.size + 10_000);
    expect(events.every((e) => e.file === 'm.safetensors')).toBe(true);
  });

  it('holds at most maxBytesInFlight and waits for the consumer (back-pressure)', async () => {
    const plan = tenTensors();
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'm.safetensors');
    const header = tier.requested;
    const it = model.load({ maxBytesInFlight: 3500 });
    const first = await it.next();
    expect(first.value!.name).toBe('t0');
    await ticks();
    // t0 (held by the consumer), t1 and t2 fit in 3500 bytes; t3 waits for the consumer.
    expect(tier.requested - header).toBe(3000);
    await ticks();
    expect(tier.requested - header).toBe(3000);
    await it.next();
    await ticks();
    expect(tier.requested - header).toBe(4000);
    let n = 2;
    for await (const t of it) {
      expect(t.name).toBe(`t${n++}`);
      expect(tier.requested - header).toBeLessThanOrEqual((n + 2) * 1000);
    }
    expect(n).toBe(10);
  });

  it('a tensor larger than the budget is loaded alone', async () => {
    const plan = planSafetensors([
      { name: 'small', dtype: 'U8', shape: [100] },
      { name: 'big', dtype: 'U8', shape: [5000] },
      { name: 'after', dtype: 'U8', shape: [100] },
    ]);
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'm.safetensors');
    const header = tier.requested;
    const it = model.load({ maxBytesInFlight: 1000 });
    expect((await it.next()).value!.name).toBe('small');
    await ticks();
    expect(tier.requested - header).toBe(100); // big waits until small is released
    const big = await it.next();
    expect(big.value!.name).toBe('big');
    await ticks();
    expect(tier.requested - header).toBe(5100);
    expect((await it.next()).value!.name).toBe('after');
    expect((await it.next()).done).toBe(true);
  });

  it('keeps up to `concurrency` requests in flight', async () => {
    const plan = tenTensors();
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'm.safetensors');
    let open!: () => void;
    tier.gate = new Promise((r) => {
      open = r;
    });
    const it = model.load({ concurrency: 5, pieceBytes: 100 });
    const first = it.next();
    await ticks();
    expect(tier.inFlight).toBe(5);
    open();
    await first;
    for await (const _ of it) {
      /* drain */
    }
    expect(tier.maxInFlight).toBe(5);
  });

  it('fills caller buffers in place (no extra copy)', async () => {
    const plan = tenTensors();
    const model = await openModel(await memoryWith({ 'm.safetensors': fileOf(plan) }), 'm.safetensors');
    const arena = new Uint8Array(10 * 1024);
    let at = 0;
    let i = 0;
    const given: Uint8Array[] = [];
    for await (const t of model.load({
      allocate: (part) => {
        const b = arena.subarray(at, at + part.length);
        at += 1024;
        given.push(b);
        return b;
      },
    })) {
      const mine = given[i++]!;
      expect(t.bytes.buffer).toBe(arena.buffer);
      expect(t.bytes.byteOffset).toBe(mine.byteOffset);
      expect(same(t.bytes, tensorBytes(t.name, 1000))).toBe(true);
    }
    const err = await (async () => {
      for await (const _ of model.load({ allocate: () => new Uint8Array(10) })) {
        /* never */
      }
    })().catch((e) => e);
    expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
  });

  it('stops reading when the consumer breaks, with nothing left in flight', async () => {
    const plan = tenTensors();
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'm.safetensors');
    for await (const t of model.load({ maxBytesInFlight: 2000, pieceBytes: 100 })) {
      expect(t.name).toBe('t0');
      break;
    }
    expect(tier.inFlight).toBe(0);
    const after = tier.reads.length;
    await ticks();
    expect(tier.reads.length).toBe(after);
  });

  it('a failed read fails the load with its error; an aborted signal is ABORTED', async () => {
    const plan = tenTensors();
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'm.safetensors');
    tier.failAt = plan.tensors[4]!.offset;
    const names: string[] = [];
    const err = await (async () => {
      for await (const t of model.load({ maxBytesInFlight: 1500 })) names.push(t.name);
    })().catch((e) => e);
    expect(err.message).toContain('injected failure');
    expect(names).toEqual(['t0', 't1', 't2', 't3']);
    expect(tier.inFlight).toBe(0);
    const ac = new AbortController();
    ac.abort();
    const aborted = await (async () => {
      for await (const _ of model.load({ signal: ac.signal })) {
        /* never */
      }
    })().catch((e) => e);
    expect(isTierError(aborted, 'ABORTED')).toBe(true);
  });

  it("the caller's signal aborting between tensors ends the load with ABORTED", async () => {
    const plan = tenTensors();
    const model = await openModel(await memoryWith({ 'm.safetensors': fileOf(plan) }), 'm.safetensors');
    const ac = new AbortController();
    const names: string[] = [];
    const err = await (async () => {
      for await (const t of model.load({ signal: ac.signal, maxBytesInFlight: 1000 })) {
        names.push(t.name);
        await ticks();
        if (t.name === 't1') ac.abort();
      }
    })().catch((e) => e);
    expect(names).toEqual(['t0', 't1']);
    expect(isTierError(err, 'ABORTED')).toBe(true);
  });

  it('selects by exact name, glob and RegExp; an absent exact name is NOT_FOUND', async () => {
    const model = await openModel(
      await memoryWith({ 'm.safetensors': fileOf(tenTensors()) }),
      'm.safetensors',
    );
    const names = async (tensors: (string | RegExp)[]) => {
      const out: string[] = [];
      for await (const t of model.load({ tensors })) out.push(t.name);
      return out;
    };
    expect(await names(['t7', 't1'])).toEqual(['t1', 't7']);
    expect(await names(['t?'])).toHaveLength(10);
    expect(await names([/^t[23]$/g])).toEqual(['t2', 't3']);
    expect(await names(['x*'])).toEqual([]);
    const err = await names(['t11']).catch((e) => e);
    expect(isTierError(err, 'NOT_FOUND')).toBe(true);
  });
});

describe('sharded models (Hugging Face index)', () => {
  it('finds each tensor in its shard and streams shard by shard, with per-file stats', async () => {
    const { files } = await shardedModel();
    const model = await openModel(await memoryWith(files), 'llm/model.safetensors.index.json');
    expect(model.files.map((f) => f.key)).toEqual([
      'llm/model-00001-of-00002.safetensors',
      'llm/model-00002-of-00002.safetensors',
    ]);
    expect(model.index?.metadata).toEqual({ total_size: 2048 });
    const got: string[] = [];
    for await (const t of model.load()) {
      got.push(t.name);
      expect(same(t.bytes, tensorBytes(t.name, t.tensor.length)), t.name).toBe(true);
    }
    expect(got).toEqual([
      'model.embed.weight',
      'model.layers.0.q.weight',
      'model.layers.1.q.weight',
      'lm_head.weight',
    ]);
    const s = model.stats();
    // Each file: the probe (the whole of these small files), then its tensors.
    for (const f of model.files) {
      const tensors = f.tensors.reduce((n, t) => n + t.length, 0);
      expect(s.files[f.key]!.bytesRead).toBe(f.size + tensors);
    }
    const indexKey = 'llm/model.safetensors.index.json';
    expect(s.files[indexKey]!.bytesRead).toBe(files[indexKey].byteLength);
    const ranges = await rankByteRanges(await memoryWith(files), 'llm/model.safetensors.index.json', {
      tensors: ['lm_head.weight'],
      headers: false,
    });
    expect([...ranges.keys()]).toEqual(['llm/model-00002-of-00002.safetensors']);
    expect(ranges.get('llm/model-00002-of-00002.safetensors')![0]!.length).toBe(32 * 16 * 2);
  });

  it('refuses an index that disagrees with its shards, escapes its folder, or is not JSON', async () => {
    const reason = (err: unknown) => (isTierError(err) ? `${err.code}/${err.details?.reason}` : String(err));
    const { files, index } = await shardedModel();
    const variant = async (map: unknown) => {
      const tier = await memoryWith({
        ...files,
        'llm/model.safetensors.index.json': new TextEncoder().encode(
          typeof map === 'string' ? map : JSON.stringify(map),
        ),
      });
      return reason(await openModel(tier, 'llm/model.safetensors.index.json').catch((e) => e));
    };
    expect(
      await variant({ weight_map: { ...index.weight_map, ghost: 'model-00001-of-00002.safetensors' } }),
    ).toBe('INTEGRITY/INDEX');
    const moved = { ...index.weight_map, 'lm_head.weight': 'model-00001-of-00002.safetensors' };
    expect(await variant({ weight_map: moved })).toBe('INTEGRITY/INDEX');
    const { 'lm_head.weight': _, ...missing } = index.weight_map;
    expect(await variant({ weight_map: missing })).toBe('INTEGRITY/INDEX');
    expect(await variant({ weight_map: { a: '../secret.safetensors' } })).toBe('INTEGRITY/INDEX');
    expect(await variant({ weight_map: { a: '/etc/passwd' } })).toBe('INTEGRITY/INDEX');
    expect(await variant({ weight_map: { a: 3 } })).toBe('INTEGRITY/INDEX');
    expect(await variant({ nothing: 1 })).toBe('INTEGRITY/INDEX');
    expect(await variant('{"weight_map": ')).toBe('INTEGRITY/HEADER_JSON');
  });

  it('opens a list of files (safetensors and GGUF together), refusing a tensor named twice', async () => {
    const a = planSafetensors([{ name: 'x', dtype: 'F32', shape: [4] }]);
    const g = planGguf([{ name: 'y', dtype: 'Q4_0', shape: [2, 32] }]);
    const tier = await memoryWith({
      'a.safetensors': fileOf(a),
      'b.gguf': fileOf(g),
      'c.safetensors': fileOf(a),
    });
    const model = await openModel(tier, ['a.safetensors', 'b.gguf']);
    expect([...model.tensors.keys()]).toEqual(['x', 'y']);
    const err = await openModel(tier, ['a.safetensors', 'c.safetensors']).catch((e) => e);
    expect(isTierError(err, 'INTEGRITY') && err.details?.reason).toBe('DUPLICATE');
  });
});

describe('pre-warming a rank', () => {
  it('reads exactly the ranges a rank load reads, in pieces, and reports progress', async () => {
    const plan = planSafetensors([
      { name: 'w.row', dtype: 'F32', shape: [64, 64] },
      { name: 'w.rep', dtype: 'F32', shape: [10] },
    ]);
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const slices = [{ pattern: '*.row', dim: 0 }];
    // A probe no longer than the header: the ranges are the header and this rank's tensor bytes.
    const ranges = await rankByteRanges(tier, 'm.safetensors', {
      rank: 1,
      worldSize: 2,
      slices,
      probeBytes: 16,
    });
    tier.reads.length = 0;
    const progress: number[] = [];
    const r = await prewarmRanges(tier, ranges, {
      pieceBytes: 1000,
      coalesceBytes: 0,
      onProgress: (b) => progress.push(b),
    });
    const want = plan.header.byteLength + 32 * 64 * 4 + 40;
    expect(r.bytes).toBe(want);
    expect(progress.at(-1)).toBe(want);
    expect(tier.reads.every((x) => x.length <= 1000)).toBe(true);
    expect(tier.reads.reduce((n, x) => n + x.length, 0)).toBe(want);
    const missing = await prewarmRanges(
      tier,
      new Map([['gone.safetensors', [{ offset: 0, length: 4 }]]]),
    ).catch((e) => e);
    expect(isTierError(missing, 'NOT_FOUND')).toBe(true);
    // Column runs with small gaps are read together.
    const cols = await rankByteRanges(tier, 'm.safetensors', {
      rank: 0,
      worldSize: 2,
      tensors: ['w.row'],
      slices: [{ pattern: '*.row', dim: 1 }],
      probeBytes: 16,
      headers: false,
    });
    expect(cols.get('m.safetensors')).toHaveLength(64);
    tier.reads.length = 0;
    const c = await prewarmRanges(tier, cols, { coalesceBytes: 128 });
    expect(tier.reads).toHaveLength(1);
    expect(c.bytes).toBe(63 * 256 + 128);
    // Given the stack's block size, neighbours merge only when no untouched block lies between them.
    tier.reads.length = 0;
    const spread = new Map([
      [
        'm.safetensors',
        [
          { offset: 0, length: 10 },
          { offset: 100, length: 10 },
          { offset: 300, length: 10 },
        ],
      ],
    ]);
    await prewarmRanges(tier, spread, { blockSize: 64 });
    expect(tier.reads.map((x) => [x.offset, x.length])).toEqual([
      [0, 110],
      [300, 10],
    ]);
    // With the default probe, the first 256 KiB (here the whole file) count: opening reads them.
    const whole = await rankByteRanges(tier, 'm.safetensors', { rank: 1, worldSize: 2, slices });
    expect(whole.get('m.safetensors')).toEqual([{ offset: 0, length: plan.size }]);
  });

  it("a sharded model's ranges include its index", async () => {
    const { files } = await shardedModel();
    const ranges = await rankByteRanges(await memoryWith(files), 'llm/model.safetensors.index.json', {
      tensors: ['lm_head.weight'],
    });
    const indexKey = 'llm/model.safetensors.index.json';
    expect([...ranges.keys()]).toEqual([
      indexKey,
      'llm/model-00001-of-00002.safetensors',
      'llm/model-00002-of-00002.safetensors',
    ]);
    expect(ranges.get(indexKey)).toEqual([{ offset: 0, length: files[indexKey].byteLength }]);
  });
});
