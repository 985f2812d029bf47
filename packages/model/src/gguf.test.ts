import { isTierError } from '@tierkit/tier-core';
import { describe, expect, it } from 'vitest';
import { openModel } from './model.js';
import { fileOf, memoryWith, same, tensorBytes, WatchedTier } from './test-helpers.js';
import { planGguf } from './writers.js';

const SPECS = [
  { name: 'token_embd.weight', dtype: 'Q4_K', shape: [8, 512] },
  { name: 'blk.0.attn_q.weight', dtype: 'Q4_0', shape: [16, 64] },
  { name: 'blk.0.attn_norm.weight', dtype: 'F32', shape: [64] },
  { name: 'blk.0.ffn_up.weight', dtype: 'Q8_0', shape: [12, 96] },
  { name: 'blk.0.ffn_down.weight', dtype: 'Q6_K', shape: [4, 256] },
  { name: 'blk.0.ffn_gate.weight', dtype: 'BF16', shape: [3, 5] },
  { name: 'output.weight', dtype: 'F16', shape: [2, 2, 3] },
];

const reason = (err: unknown) => (isTierError(err) ? `${err.code}/${err.details?.reason}` : String(err));

/** Hand-assembled GGUF bytes for hostile cases. */
class Bytes {
  parts: number[] = [];
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(...b);
    return this;
  }
  u64(v: bigint | number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(...b);
    return this;
  }
  str(s: string) {
    const b = Buffer.from(s);
    this.u64(b.length);
    this.parts.push(...b);
    return this;
  }
  pad(n: number) {
    this.parts.push(...new Array(n).fill(0));
    return this;
  }
  get bytes() {
    return new Uint8Array(this.parts);
  }
}
const head = (tensors: number | bigint, kvs: number | bigint, version = 3) =>
  new Bytes().u32(0x46554747).u32(version).u64(tensors).u64(kvs);

async function refusal(bytes: Uint8Array, options = {}) {
  const tier = new WatchedTier(await memoryWith({ 'm.gguf': bytes }));
  const err = await openModel(tier, 'm.gguf', options).catch((e) => e);
  return { err, tier };
}

describe('GGUF', () => {
  for (const version of [2, 3] as const) {
    it(`v${version}: metadata, quantised tensors (Q4_K, Q4_0, Q8_0, Q6_K) and plain ones, byte-exact`, async () => {
      const plan = planGguf(SPECS, {
        version,
        metadata: {
          'general.architecture': 'llama',
          'general.name': 'tiny',
          'llama.context_length': 4096,
          'general.file_type': { type: 'u32', value: 15 },
          'general.size': 123n,
          'tokenizer.ggml.tokens': { type: 'array', elementType: 'string', value: ['<s>', '</s>', 'é'] },
          'tokenizer.ggml.scores': { type: 'array', elementType: 'f32', value: [0, -1.5, 2] },
          'general.flag': true,
          'general.offset': { type: 'i64', value: -5n },
        },
      });
      const tier = new WatchedTier(await memoryWith({ 'llama.Q4.gguf': fileOf(plan) }));
      const model = await openModel(tier, 'llama.Q4.gguf');
      expect(tier.reads).toHaveLength(1);
      const f = model.files[0]!;
      expect(f.format).toBe('gguf');
      expect(f.ggufVersion).toBe(version);
      expect(f.dataOffset % 32).toBe(0);
      expect(f.ggufMetadata.get('general.architecture')).toBe('llama');
      expect(f.ggufMetadata.get('llama.context_length')).toBe(4096);
      expect(f.ggufMetadata.get('general.size')).toBe(123n);
      expect(f.ggufMetadata.get('general.offset')).toBe(-5n);
      expect(f.ggufMetadata.get('general.flag')).toBe(true);
      expect(f.ggufMetadata.get('tokenizer.ggml.tokens')).toEqual(['<s>', '</s>', 'é']);
      expect(f.ggufMetadata.get('tokenizer.ggml.scores')).toEqual([0, -1.5, 2]);
      const sizes: Record<string, number> = {
        'token_embd.weight': 8 * 2 * 144,
        'blk.0.attn_q.weight': 16 * 2 * 18,
        'blk.0.ffn_up.weight': 12 * 3 * 34,
        'blk.0.ffn_down.weight': 4 * 210,
        'blk.0.ffn_gate.weight': 30,
      };
      for (const s of SPECS) {
        const t = model.tensor(s.name);
        expect(t.dtype).toBe(s.dtype);
        expect(t.shape).toEqual(s.shape);
        expect(t.offset % 32).toBe(0);
        if (sizes[s.name]) expect(t.length).toBe(sizes[s.name]);
        const got = await model.readTensor(s.name);
        expect(same(got.bytes, tensorBytes(s.name, t.length)), s.name).toBe(true);
      }
    });
  }

  it('honours general.alignment and reads long headers with growing reads', async () => {
    const tokens = Array.from({ length: 3000 }, (_, i) => `token-${i}`);
    const plan = planGguf(SPECS, {
      alignment: 64,
      metadata: { 'tokenizer.ggml.tokens': { type: 'array', elementType: 'string', value: tokens } },
    });
    const tier = new WatchedTier(await memoryWith({ 'm.gguf': fileOf(plan) }));
    const model = await openModel(tier, 'm.gguf', { probeBytes: 1024 });
    expect(tier.reads.length).toBeGreaterThan(2);
    expect(tier.requested).toBeLessThanOrEqual(plan.header.byteLength * 2 + 1024);
    expect(model.files[0]!.dataOffset % 64).toBe(0);
    for (const t of model.tensors.values()) expect(t.offset % 64).toBe(0);
    expect((model.files[0]!.ggufMetadata.get('tokenizer.ggml.tokens') as string[])[2999]).toBe('token-2999');
    const got = await model.readTensor('output.weight');
    expect(same(got.bytes, tensorBytes('output.weight', 24))).toBe(true);
  });

  describe('hostile headers', () => {
    it('version 1, an unknown version and a big-endian file are UNSUPPORTED', async () => {
      for (const v of [1, 4, 0x03000000]) {
        const { err } = await refusal(head(0, 0, v).pad(64).bytes);
        expect(isTierError(err, 'UNSUPPORTED'), String(v)).toBe(true);
      }
      const { err } = await refusal(head(0, 0, 0x03000000).pad(64).bytes);
      expect(err.message).toContain('big-endian');
    });

    it('counts the file cannot hold, refused before reading or allocating for them', async () => {
      for (const [t, k] of [
        [2n ** 62n, 0],
        [0, 2n ** 60n],
        [2n ** 64n - 1n, 1],
      ] as const) {
        const { err, tier } = await refusal(head(t, k).pad(100).bytes);
        expect(reason(err)).toMatch(/^INTEGRITY\/(TRUNCATED|BAD_VALUE)$/);
        expect(tier.requested).toBeLessThan(1024);
      }
    });

    it('a string or an array longer than the file', async () => {
      const longKey = head(0, 1)
        .u64(2n ** 40n)
        .pad(64).bytes;
      expect(reason((await refusal(longKey)).err)).toBe('INTEGRITY/TRUNCATED');
      const bigArray = head(0, 1)
        .str('a')
        .u32(9)
        .u32(4)
        .u64(2n ** 50n)
        .pad(64).bytes;
      expect(reason((await refusal(bigArray)).err)).toBe('INTEGRITY/TRUNCATED');
      const cut = head(0, 1).str('general.name').u32(8).u64(100).bytes; // the value is cut short
      expect(reason((await refusal(cut)).err)).toBe('INTEGRITY/TRUNCATED');
    });

    it('an array that fits in the file but not under the header cap is refused before it is decoded', async () => {
      // 100,000 u8 elements announced, and the file long enough to hold them: only the cap can refuse
      // it, and must do so before decoding element by element.
      const bytes = head(0, 1).str('a').u32(9).u32(0).u64(100_000).pad(100_064).bytes;
      const { err, tier } = await refusal(bytes, { maxHeaderBytes: 4096, probeBytes: 1024 });
      expect(reason(err)).toBe('INTEGRITY/HEADER_TOO_LARGE');
      // Refused from the announced count (not after decoding up to the cap).
      expect(err.details).toMatchObject({ n: 100_000, maxBytes: 4096 });
      expect(tier.requested).toBeLessThanOrEqual(4096);
    });

    it('a header past maxHeaderBytes', async () => {
      const tokens = Array.from({ length: 1000 }, (_, i) => `token-${i}`);
      const plan = planGguf(SPECS, {
        metadata: { t: { type: 'array', elementType: 'string', value: tokens } },
      });
      const { err, tier } = await refusal(fileOf(plan), { maxHeaderBytes: 4096, probeBytes: 1024 });
      expect(reason(err)).toBe('INTEGRITY/HEADER_TOO_LARGE');
      expect(tier.requested).toBeLessThanOrEqual(4096);
    });

    const tensor = (b: Bytes, name: string, ne: number[], type: number, offset: number | bigint) => {
      b.str(name).u32(ne.length);
      for (const n of ne) b.u64(n);
      return b.u32(type).u64(offset);
    };

    it('tensors that overlap, are misaligned, or run past the end', async () => {
      const overlap = tensor(tensor(head(2, 0), 'a', [64], 0, 0), 'b', [64], 0, 128);
      expect(reason((await refusal(overlap.pad(32 - (overlap.parts.length % 32)).pad(512).bytes)).err)).toBe(
        'INTEGRITY/OVERLAP',
      );
      const misaligned = tensor(head(1, 0), 'a', [4], 0, 8);
      expect(reason((await refusal(misaligned.pad(128).bytes)).err)).toBe('INTEGRITY/ALIGNMENT');
      const past = tensor(head(1, 0), 'a', [1024], 0, 0);
      expect(reason((await refusal(past.pad(128).bytes)).err)).toBe('INTEGRITY/PAST_END');
      const far = tensor(head(1, 0), 'a', [4], 0, 2n ** 60n);
      expect(reason((await refusal(far.pad(128).bytes)).err)).toMatch(/^INTEGRITY\/(PAST_END|BAD_VALUE)$/);
    });

    it('rows that are not whole blocks, unknown types, too many dimensions, duplicates', async () => {
      const partial = tensor(head(1, 0), 'a', [48, 2], 2, 0); // Q4_0 rows of 48: not blocks of 32
      expect(reason((await refusal(partial.pad(256).bytes)).err)).toBe('INTEGRITY/DTYPE_SIZE');
      const removed = tensor(head(1, 0), 'a', [32], 4, 0); // Q4_2, removed from ggml
      expect(isTierError((await refusal(removed.pad(256).bytes)).err, 'UNSUPPORTED')).toBe(true);
      const dims = tensor(head(1, 0), 'a', [1, 1, 1, 1, 1], 0, 0);
      expect(reason((await refusal(dims.pad(256).bytes)).err)).toBe('INTEGRITY/BAD_VALUE');
      const overflow = tensor(head(1, 0), 'a', [2 ** 31, 2 ** 31, 2 ** 31], 0, 0);
      expect(reason((await refusal(overflow.pad(256).bytes)).err)).toBe('INTEGRITY/BAD_VALUE');
      const dup = tensor(tensor(head(2, 0), 'a', [8], 0, 0), 'a', [8], 0, 32);
      expect(reason((await refusal(dup.pad(256).bytes)).err)).toBe('INTEGRITY/DUPLICATE');
      const dupKey = head(0, 2).str('k').u32(4).u32(1).str('k').u32(4).u32(2).pad(32);
      expect(reason((await refusal(dupKey.bytes)).err)).toBe('INTEGRITY/DUPLICATE');
      const longName = tensor(head(1, 0), 'x'.repeat(64), [8], 0, 0);
      expect(reason((await refusal(longName.pad(256).bytes)).err)).toBe('INTEGRITY/BAD_VALUE');
    });

    it('bad values: alignment, bool, value type', async () => {
      const align = head(0, 1).str('general.alignment').u32(4).u32(48).pad(64);
      expect(reason((await refusal(align.bytes)).err)).toBe('INTEGRITY/ALIGNMENT');
      const bool = head(0, 1).str('b').u32(7);
      bool.parts.push(7);
      expect(reason((await refusal(bool.pad(64).bytes)).err)).toBe('INTEGRITY/BAD_VALUE');
      const type = head(0, 1).str('t').u32(99).pad(64);
      expect(isTierError((await refusal(type.bytes)).err, 'UNSUPPORTED')).toBe(true);
    });
  });
});
