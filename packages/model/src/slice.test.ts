import { isTierError } from '@tierkit/tier-core';
import { describe, expect, it } from 'vitest';
import { openModel } from './model.js';
import { fileOf, memoryWith, same, tensorBytes, WatchedTier } from './test-helpers.js';
import type { TensorInfo } from './types.js';
import { planGguf, planSafetensors } from './writers.js';

/**
 * The reference slice: walk every element (or block) index of the whole
 * tensor and keep those whose coordinate along `dim` is in the rank's part.
 */
function referenceSlice(
  t: TensorInfo,
  whole: Uint8Array,
  dim: number,
  rank: number,
  world: number,
): Uint8Array {
  const shape = [...t.shape];
  const d = dim < 0 ? shape.length + dim : dim;
  const n = shape[d]!;
  const lo = Math.floor((rank * n) / world);
  const hi = Math.floor(((rank + 1) * n) / world);
  // Work in units of one block (elements for plain types, blocks along the last dim for quantised ones).
  const units = [...shape];
  const last = units.length - 1;
  units[last] = units[last]! / t.encoding.blockElems;
  const unitBytes = t.encoding.blockBytes;
  const scale = d === last ? t.encoding.blockElems : 1;
  const out: number[] = [];
  const count = units.reduce((a, b) => a * b, 1);
  for (let i = 0; i < count; i++) {
    let rest = i;
    let coord = 0;
    for (let k = last; k >= 0; k--) {
      const c = rest % units[k]!;
      rest = Math.floor(rest / units[k]!);
      if (k === d) coord = c * scale;
    }
    if (coord >= lo && coord < hi) for (let b = 0; b < unitBytes; b++) out.push(whole[i * unitBytes + b]!);
  }
  return new Uint8Array(out);
}

const SPECS = [
  { name: 'q.weight', dtype: 'BF16', shape: [12, 10] },
  { name: 'o.weight', dtype: 'F32', shape: [6, 9] },
  { name: 'experts', dtype: 'F16', shape: [4, 6, 8] },
  { name: 'bias', dtype: 'F8_E4M3', shape: [10] },
  { name: 'norm', dtype: 'F32', shape: [7] },
];

describe('tensor-parallel slices', () => {
  it('every rank of 1–4 gets exactly the slice computed from the whole tensor, along every dim', async () => {
    const plan = planSafetensors(SPECS);
    const model = await openModel(await memoryWith({ 'm.safetensors': fileOf(plan) }), 'm.safetensors');
    for (const t of model.tensors.values()) {
      const whole = tensorBytes(t.name, t.length);
      for (let dim = -1; dim < t.shape.length; dim++) {
        for (const world of [1, 2, 3, 4]) {
          for (let rank = 0; rank < world; rank++) {
            const got = await model.readTensor(t.name, { slice: { dim, rank, worldSize: world } });
            const want = referenceSlice(t, whole, dim, rank, world);
            expect(same(got.bytes, want), `${t.name} dim ${dim} ${rank}/${world}`).toBe(true);
            const d = dim < 0 ? t.shape.length + dim : dim;
            expect(got.shape[d]).toBe(
              Math.floor(((rank + 1) * t.shape[d]!) / world) - Math.floor((rank * t.shape[d]!) / world),
            );
          }
        }
      }
    }
  });

  it('quantised GGUF tensors split along rows, and along columns on block boundaries only', async () => {
    const plan = planGguf([
      { name: 'w', dtype: 'Q4_K', shape: [6, 1024] },
      { name: 'v', dtype: 'Q8_0', shape: [5, 128] },
    ]);
    const model = await openModel(await memoryWith({ 'm.gguf': fileOf(plan) }), 'm.gguf');
    for (const name of ['w', 'v']) {
      const t = model.tensor(name);
      const whole = tensorBytes(name, t.length);
      for (const dim of [0, 1]) {
        for (const world of [1, 2, 4]) {
          for (let rank = 0; rank < world; rank++) {
            const got = await model.readTensor(name, { slice: { dim, rank, worldSize: world } });
            expect(
              same(got.bytes, referenceSlice(t, whole, dim, rank, world)),
              `${name} ${dim} ${rank}/${world}`,
            ).toBe(true);
          }
        }
      }
    }
    // 1024 Q4_K columns are 4 blocks of 256: 8 ranks would cut blocks.
    const err = await model.readTensor('w', { slice: { dim: 1, rank: 0, worldSize: 8 } }).catch((e) => e);
    expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
  });

  it('packed sub-byte types (F4: 2 per byte) split on whole bytes only', async () => {
    const plan = planSafetensors([{ name: 'p', dtype: 'F4', shape: [6, 8] }]);
    const model = await openModel(await memoryWith({ 'm.safetensors': fileOf(plan) }), 'm.safetensors');
    const t = model.tensor('p');
    const whole = tensorBytes('p', t.length);
    for (const [dim, world] of [
      [0, 2],
      [0, 3],
      [1, 2],
      [1, 4],
    ]) {
      for (let rank = 0; rank < world!; rank++) {
        const got = await model.readTensor('p', { slice: { dim: dim!, rank, worldSize: world! } });
        expect(same(got.bytes, referenceSlice(t, whole, dim!, rank, world!)), `${dim} ${rank}/${world}`).toBe(
          true,
        );
      }
    }
    // 8 columns in 3 parts: [2, 5) starts inside a byte.
    const err = await model.readTensor('p', { slice: { dim: 1, rank: 1, worldSize: 3 } }).catch((e) => e);
    expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
  });

  it('refuses a bad rank, world size or dimension', async () => {
    const model = await openModel(
      await memoryWith({ 'm.safetensors': fileOf(planSafetensors(SPECS)) }),
      'm.safetensors',
    );
    for (const slice of [
      { dim: 0, rank: 2, worldSize: 2 },
      { dim: 0, rank: -1, worldSize: 2 },
      { dim: 0, rank: 0, worldSize: 0 },
      { dim: 2, rank: 0, worldSize: 2 },
      { dim: -3, rank: 0, worldSize: 2 },
    ]) {
      const err = await model.readTensor('q.weight', { slice }).catch((e) => e);
      expect(isTierError(err, 'INVALID_ARGUMENT'), JSON.stringify(slice)).toBe(true);
    }
  });

  it('reads only the byte runs of the slice; rankByteRanges lists exactly what a rank load reads', async () => {
    const specs = [
      { name: 'a.col', dtype: 'F32', shape: [64, 1024] }, // 4 KiB rows: a column split leaves 2 KiB gaps
      { name: 'b.row', dtype: 'F32', shape: [64, 256] },
      { name: 'c.rep', dtype: 'F32', shape: [16] },
    ];
    const plan = planSafetensors(specs);
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'm.safetensors');
    const slices = [
      { pattern: '*.col', dim: -1 },
      { pattern: '*.row', dim: 0 },
    ];
    for (const rank of [0, 1]) {
      const ranges = model.rankByteRanges({ rank, worldSize: 2, slices, headers: false });
      const list = ranges.get('m.safetensors')!;
      const bytes = list.reduce((n, r) => n + r.length!, 0);
      // Half of each split tensor plus the whole replicated one.
      expect(bytes).toBe(64 * 512 * 4 + 32 * 256 * 4 + 64);
      // Rank 0's row half and the replicated tensor are apart; rank 1's row half runs into it.
      expect(list.length).toBe(64 + (rank === 0 ? 2 : 1));
      // Without coalescing, the loader's reads are exactly those ranges.
      tier.reads.length = 0;
      const seen: string[] = [];
      for await (const t of model.load({ rank, worldSize: 2, slices, coalesceBytes: 0 })) {
        seen.push(t.name);
        const whole = tensorBytes(t.name, t.tensor.length);
        const dim = t.name === 'a.col' ? -1 : 0;
        const want = t.name === 'c.rep' ? whole : referenceSlice(t.tensor, whole, dim, rank, 2);
        expect(same(t.bytes, want), t.name).toBe(true);
      }
      expect(seen).toEqual(['a.col', 'b.row', 'c.rep']);
      const read = tier.reads
        .map((r) => ({ offset: r.offset, length: r.length }))
        .sort((x, y) => x.offset - y.offset);
      const merged: { offset: number; length: number }[] = [];
      for (const r of read) {
        const last = merged.at(-1);
        if (last && last.offset + last.length === r.offset) last.length += r.length;
        else merged.push({ ...r });
      }
      expect(merged).toEqual(list);
    }
  });

  it('coalesces a column slice into few requests, reading gaps no wider than coalesceBytes', async () => {
    const plan = planSafetensors([{ name: 'w', dtype: 'F32', shape: [256, 1024] }]);
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'm.safetensors');
    tier.reads.length = 0;
    tier.requested = 0;
    const t = await model.readTensor('w', { slice: { dim: 1, rank: 1, worldSize: 2 } });
    expect(same(t.bytes, referenceSlice(model.tensor('w'), tensorBytes('w', 1 << 20), 1, 1, 2))).toBe(true);
    expect(tier.reads.length).toBeLessThanOrEqual(2); // 1 MiB scratch spans, not 256 reads
    expect(tier.requested).toBeLessThan((1 << 20) - 2048 + 1);
  });
});
