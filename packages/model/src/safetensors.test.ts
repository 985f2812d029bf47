import { isTierError } from '@tierkit/tier-core';
import { describe, expect, it } from 'vitest';
import { openModel } from './model.js';
import { fileOf, memoryWith, same, tensorBytes, WatchedTier } from './test-helpers.js';
import { planSafetensors } from './writers.js';

const SPECS = [
  { name: 'embed.weight', dtype: 'BF16', shape: [64, 32] },
  { name: 'layers.0.attn.q_proj.weight', dtype: 'F8_E4M3', shape: [32, 32] },
  { name: 'layers.0.attn.q_proj.weight_scale', dtype: 'F32', shape: [1] },
  { name: 'layers.0.mlp.up.weight', dtype: 'F8_E5M2', shape: [48, 32] },
  { name: 'layers.0.mlp.up.bias', dtype: 'F16', shape: [48] },
  { name: 'layers.0.norm', dtype: 'F64', shape: [32] },
  { name: 'layers.0.packed', dtype: 'F4', shape: [8, 6] },
  { name: 'layers.0.mx', dtype: 'F6_E2M3', shape: [4, 8] },
  { name: 'ids', dtype: 'I64', shape: [3] },
  { name: 'mask', dtype: 'BOOL', shape: [5] },
  { name: 'empty', dtype: 'F32', shape: [0, 4] },
  { name: 'scalar', dtype: 'U8', shape: [] },
];

/** A safetensors file with a hand-written header (after the 8-byte length) and `dataBytes` of data. */
function raw(header: string | Uint8Array, dataBytes: number, lengthField?: bigint): Uint8Array {
  const body = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + body.byteLength + dataBytes);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(body.byteLength), true);
  out.set(body, 8);
  return out;
}

async function refusal(bytes: Uint8Array, options = {}) {
  const tier = new WatchedTier(await memoryWith({ 'm.safetensors': bytes }));
  const err = await openModel(tier, 'm.safetensors', options).catch((e) => e);
  return { err, tier };
}

describe('safetensors', () => {
  it('reads every dtype byte-exact, with shapes, metadata and absolute offsets', async () => {
    const plan = planSafetensors(SPECS, { format: 'pt', note: 'héllo' });
    const tier = new WatchedTier(await memoryWith({ 'a/model.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'a/model.safetensors');
    // One ranged read found the whole header.
    expect(tier.reads).toHaveLength(1);
    expect(model.files[0]!.metadata).toEqual({ format: 'pt', note: 'héllo' });
    expect(model.files[0]!.dataOffset).toBe(plan.header.byteLength);
    expect([...model.tensors.keys()]).toEqual(SPECS.map((s) => s.name));
    for (const [i, s] of SPECS.entries()) {
      const t = model.tensor(s.name);
      expect(t.dtype).toBe(s.dtype);
      expect(t.shape).toEqual(s.shape);
      expect(t.offset).toBe(plan.tensors[i]!.offset);
      const loaded = await model.readTensor(s.name);
      expect(same(loaded.bytes, tensorBytes(s.name, t.length)), s.name).toBe(true);
    }
    expect(model.tensor('layers.0.packed').length).toBe(24); // 48 four-bit elements
    expect(model.tensor('layers.0.mx').length).toBe(24); // 32 six-bit elements
    expect(model.tensor('scalar').length).toBe(1);
  });

  it('reads a header longer than the probe with exactly one more read', async () => {
    const specs = Array.from({ length: 400 }, (_, i) => ({
      name: `t.${i}.weight`,
      dtype: 'F16',
      shape: [2, 2],
    }));
    const plan = planSafetensors(specs);
    expect(plan.header.byteLength).toBeGreaterThan(4096);
    const tier = new WatchedTier(await memoryWith({ 'm.safetensors': fileOf(plan) }));
    const model = await openModel(tier, 'm.safetensors', { probeBytes: 1024 });
    expect(tier.reads.map((r) => [r.offset, r.length])).toEqual([
      [0, 1024],
      [1024, plan.header.byteLength - 1024],
    ]);
    expect(model.tensors.size).toBe(400);
  });

  it('fills a caller buffer in place and refuses one too small', async () => {
    const plan = planSafetensors(SPECS);
    const model = await openModel(await memoryWith({ 'm.safetensors': fileOf(plan) }), 'm.safetensors');
    const mine = new Uint8Array(64 * 32 * 2 + 10);
    const view = await model.readTensorInto('embed.weight', mine);
    expect(view.buffer).toBe(mine.buffer);
    expect(view.byteOffset).toBe(0);
    expect(same(view, tensorBytes('embed.weight', 4096))).toBe(true);
    const err = await model.readTensorInto('embed.weight', new Uint8Array(10)).catch((e) => e);
    expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect(isTierError(await model.readTensor('nope').catch((e) => e), 'NOT_FOUND')).toBe(true);
  });

  describe('hostile headers are refused with typed errors and no large allocation', () => {
    const reason = (err: unknown) => (isTierError(err) ? `${err.code}/${err.details?.reason}` : String(err));
    const good = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}';

    it('a file shorter than 8 bytes', async () => {
      expect(reason((await refusal(new Uint8Array(5))).err)).toBe('INTEGRITY/TRUNCATED');
    });

    it('a header length past the end of the file', async () => {
      const { err, tier } = await refusal(raw(good, 8, 10_000n));
      expect(reason(err)).toBe('INTEGRITY/TRUNCATED');
      expect(tier.requested).toBeLessThan(1024);
    });

    it('a huge header length (2^63, and over the limit) is refused before any read of that size', async () => {
      for (const n of [2n ** 63n, 2n ** 64n - 1n, 100_000_001n]) {
        const { err, tier } = await refusal(raw(good, 8, n));
        expect(reason(err)).toBe('INTEGRITY/HEADER_TOO_LARGE');
        expect(tier.requested).toBeLessThan(1024);
      }
      // A caller's own limit applies too.
      const { err } = await refusal(raw(good, 8), { maxHeaderBytes: 16 });
      expect(reason(err)).toBe('INTEGRITY/HEADER_TOO_LARGE');
    });

    it('a truncated data region (offsets past the end)', async () => {
      const { err } = await refusal(raw(good, 4));
      expect(reason(err)).toBe('INTEGRITY/PAST_END');
    });

    it('non-JSON, invalid UTF-8, a BOM or leading space, a non-object', async () => {
      expect(reason((await refusal(raw('{"a": nope}', 0))).err)).toBe('INTEGRITY/HEADER_JSON');
      expect(reason((await refusal(raw(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), 0))).err)).toBe(
        'INTEGRITY/HEADER_JSON',
      );
      expect(reason((await refusal(raw(` ${good}`, 8))).err)).toBe('INTEGRITY/HEADER_JSON');
      expect(reason((await refusal(raw('[1,2]', 0))).err)).toBe('INTEGRITY/HEADER_JSON');
      expect(reason((await refusal(raw('{', 0))).err)).toBe('INTEGRITY/HEADER_JSON');
    });

    it('overlapping offsets, gaps, and bytes no tensor claims', async () => {
      const overlap =
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}';
      expect(reason((await refusal(raw(overlap, 12))).err)).toBe('INTEGRITY/OVERLAP');
      const gap =
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}';
      expect(reason((await refusal(raw(gap, 12))).err)).toBe('INTEGRITY/GAP');
      expect(reason((await refusal(raw(good, 16))).err)).toBe('INTEGRITY/GAP');
      const reversed = '{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}';
      expect(reason((await refusal(raw(reversed, 8))).err)).toBe('INTEGRITY/OFFSETS');
      const huge = '{"a":{"dtype":"U8","shape":[1e300],"data_offsets":[0,1e300]}}';
      expect(reason((await refusal(raw(huge, 8))).err)).toMatch(/^INTEGRITY\/(HEADER_SCHEMA|OFFSETS)$/);
    });

    it('sizes that do not match dtype × shape', async () => {
      const h = '{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}}';
      expect(reason((await refusal(raw(h, 8))).err)).toBe('INTEGRITY/DTYPE_SIZE');
      const odd = '{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}'; // 12 bits is not whole bytes
      expect(reason((await refusal(raw(odd, 2))).err)).toBe('INTEGRITY/DTYPE_SIZE');
      const overflow = '{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}';
      expect(reason((await refusal(raw(overflow, 8))).err)).toBe('INTEGRITY/HEADER_SCHEMA');
    });

    it('bad entries, metadata and unknown dtypes', async () => {
      expect(reason((await refusal(raw('{"a":5}', 0))).err)).toBe('INTEGRITY/HEADER_SCHEMA');
      expect(
        reason((await refusal(raw('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}', 0))).err),
      ).toBe('INTEGRITY/HEADER_SCHEMA');
      expect(
        reason((await refusal(raw('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}', 4))).err),
      ).toBe('INTEGRITY/HEADER_SCHEMA');
      expect(reason((await refusal(raw('{"__metadata__":{"x":1}}', 0))).err)).toBe('INTEGRITY/HEADER_SCHEMA');
      expect(
        reason((await refusal(raw('{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}', 1))).err),
      ).toBe('UNSUPPORTED/undefined');
    });

    it('a missing file is NOT_FOUND', async () => {
      const err = await openModel(await memoryWith({}), 'none.safetensors').catch((e) => e);
      expect(isTierError(err, 'NOT_FOUND')).toBe(true);
    });
  });
});
