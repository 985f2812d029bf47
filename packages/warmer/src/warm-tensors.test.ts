/**
 * `tierkit warm --tensors / --rank / --world-size / --split` against a real
 * S3 server: a pod pre-warms exactly what its rank will load, and that load
 * then fetches nothing from the origin.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assemble, openModel, planSafetensors, type SliceRule, type TensorSpec } from '@tierkit/model';
import { type ByteRange, createStack } from '@tierkit/tier-core';
import { createFsTier } from '@tierkit/tier-fs';
import { createS3Tier, type S3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, tierkit } from './cli-harness.js';
import { TierkitMetrics } from './metrics.js';
import { MEGATRON_SLICES, parseSplitRules } from './tensor-split.js';

const KiB = 1024;
const BLOCK = 16 * KiB;
let s3: LocalS3;
let bucket: S3Tier;
let work: string;
let originUrl: string;

/** A small Llama-shaped model in two shards, with an index, as Hugging Face lays it out. */
const shard1: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [512, 128] }];
const shard2: TensorSpec[] = [];
for (let l = 0; l < 3; l++) {
  const p = `model.layers.${l}`;
  (l < 2 ? shard1 : shard2).push(
    { name: `${p}.input_layernorm.weight`, dtype: 'F32', shape: [256] },
    { name: `${p}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [256, 256] },
    { name: `${p}.self_attn.k_proj.weight`, dtype: 'F16', shape: [128, 256] },
    { name: `${p}.self_attn.v_proj.weight`, dtype: 'F16', shape: [128, 256] },
    { name: `${p}.self_attn.o_proj.weight`, dtype: 'BF16', shape: [256, 256] },
    { name: `${p}.mlp.gate_proj.weight`, dtype: 'BF16', shape: [512, 256] },
    { name: `${p}.mlp.up_proj.weight`, dtype: 'BF16', shape: [512, 256] },
    { name: `${p}.mlp.down_proj.weight`, dtype: 'BF16', shape: [256, 512] },
  );
}
shard2.push(
  { name: 'model.norm.weight', dtype: 'F32', shape: [256] },
  { name: 'lm_head.weight', dtype: 'BF16', shape: [512, 128] },
);
const specs = new Map([...shard1, ...shard2].map((s) => [s.name, s]));
const tensorBytes = new Map<string, Uint8Array>();
const data = (name: string, length: number) => {
  const b = bytes(length, 7 + tensorBytes.size);
  tensorBytes.set(name, b);
  return b;
};
const files: Record<string, Uint8Array> = {
  'tp/model-00001-of-00002.safetensors': assemble(planSafetensors(shard1), data),
  'tp/model-00002-of-00002.safetensors': assemble(planSafetensors(shard2), data),
};
files['tp/model.safetensors.index.json'] = new TextEncoder().encode(
  JSON.stringify({
    metadata: { total_size: 0 },
    weight_map: Object.fromEntries([
      ...shard1.map((s) => [s.name, 'model-00001-of-00002.safetensors']),
      ...shard2.map((s) => [s.name, 'model-00002-of-00002.safetensors']),
    ]),
  }),
);
const modelBytes = Object.values(files).reduce((n, f) => n + f.byteLength, 0);

/** The test's own statement of Megatron's rules for these names. */
const RULES: SliceRule[] = [
  { pattern: /\.(q|k|v|gate|up)_proj\.weight$/, dim: 0 },
  { pattern: /\.(o|down)_proj\.weight$/, dim: 1 },
  { pattern: /^(model\.embed_tokens|lm_head)\.weight$/, dim: 0 },
];

const ELT: Record<string, number> = { BF16: 2, F16: 2, F32: 4 };

/** Rank r's slice of a 2-D tensor, cut from the whole tensor's bytes. */
function expectedSlice(name: string, rank: number, world: number): Uint8Array {
  const s = specs.get(name)!;
  const whole = tensorBytes.get(name)!;
  const rule = RULES.find((r) => (r.pattern as RegExp).test(name));
  if (!rule || s.shape.length < 2) return whole;
  const [rows, cols] = s.shape as [number, number];
  const e = ELT[s.dtype]!;
  if (rule.dim === 0) {
    const a = Math.floor((rank * rows) / world);
    const b = Math.floor(((rank + 1) * rows) / world);
    return whole.subarray(a * cols * e, b * cols * e);
  }
  const a = Math.floor((rank * cols) / world);
  const b = Math.floor(((rank + 1) * cols) / world);
  const out = new Uint8Array(rows * (b - a) * e);
  for (let r = 0; r < rows; r++)
    out.set(whole.subarray((r * cols + a) * e, (r * cols + b) * e), r * (b - a) * e);
  return out;
}

/** Bytes of the BLOCK-sized blocks that ranges touch, per file, summed. */
function blockBytesOf(ranges: Map<string, ByteRange[]>): number {
  let n = 0;
  for (const [key, list] of ranges) {
    const size = files[key]!.byteLength;
    const blocks = new Set<number>();
    for (const r of list)
      for (let b = Math.floor(r.offset / BLOCK); b * BLOCK < r.offset + r.length!; b++) blocks.add(b);
    for (const b of blocks) n += Math.min(BLOCK, size - b * BLOCK);
  }
  return n;
}

/** A reader of rank `rank`: [the warmed cache, the bucket], counting origin bytes. */
async function loadRank(
  cacheRoot: string,
  rank: number | undefined,
  world: number,
  tensors?: string[],
): Promise<{ originBytes: number; got: Map<string, Uint8Array> }> {
  const metrics = new TierkitMetrics();
  const origin = metrics.instrument(createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) }));
  const stack = createStack([createFsTier({ root: cacheRoot }), origin], { blockSize: BLOCK });
  try {
    const model = await openModel(stack, 'tp/model.safetensors.index.json');
    const got = new Map<string, Uint8Array>();
    for await (const t of model.load({
      ...(tensors ? { tensors } : {}),
      ...(rank !== undefined ? { rank, worldSize: world, slices: RULES } : {}),
    }))
      got.set(t.name, new Uint8Array(t.bytes));
    return { originBytes: origin.bytesRead, got };
  } finally {
    await stack.close();
  }
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'tierkit-tensors-'));
  s3 = await startLocalS3({ buckets: ['models'] });
  bucket = createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) });
  for (const [k, v] of Object.entries(files)) await bucket.write(k, v);
  originUrl =
    `s3://models?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true` +
    '&requestChecksumCalculation=WHEN_REQUIRED&responseChecksumValidation=WHEN_REQUIRED';
}, 120_000);

afterAll(async () => {
  await bucket?.close();
  await s3?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('tierkit warm --rank --world-size --split', () => {
  it("warms exactly one rank's blocks; that rank's load then fetches nothing from the origin", async () => {
    const cache = join(work, 'rank0');
    const r = await tierkit([
      'warm',
      '--cache',
      cache,
      '--origin',
      originUrl,
      'tp/',
      '--rank',
      '0',
      '--world-size',
      '2',
      '--split',
      'megatron',
      '--block-size',
      '16KiB',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    // The rank's ranges, as the model library states them for the test's own rules.
    const model = await openModel(
      createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) }),
      'tp/model.safetensors.index.json',
    );
    const ranges = model.rankByteRanges({ rank: 0, worldSize: 2, slices: RULES });
    const expected = blockBytesOf(ranges);
    expect(s).toMatchObject({
      command: 'warm',
      mode: 'tensors',
      model: ['tp/model.safetensors.index.json'],
      rank: 0,
      worldSize: 2,
      tensors: specs.size,
      // 3 layers × 7 split matrices, the embedding and the LM head.
      sliced: 23,
      modelBytes,
      blockBytes: expected,
      bytesFetched: expected,
      ok: true,
    });
    // The origin sent the blocks of the rank's ranges, not the model (each shard's first
    // 256 KiB, which a loader's opening read takes, is warmed whole on every rank).
    expect(s.bytesFetched).toBeLessThan(0.8 * modelBytes);

    // ls --partial shows the shards filled in part; with what is complete, exactly the bytes fetched.
    const partial = await tierkit(['ls', '--cache', cache, '--partial', '--json']);
    expect(partial.code, partial.stderr).toBe(0);
    const parts = JSON.parse(partial.stdout).entries as {
      key: string;
      size: number;
      objectSize: number;
      coverage: number;
    }[];
    expect(parts.map((p) => p.key)).toEqual([
      'tp/model-00001-of-00002.safetensors',
      'tp/model-00002-of-00002.safetensors',
    ]);
    for (const p of parts) {
      expect(p.objectSize).toBe(files[p.key]!.byteLength);
      expect(p.coverage).toBeGreaterThan(0);
      expect(p.coverage).toBeLessThan(1);
    }
    const all = JSON.parse((await tierkit(['ls', '--cache', cache, '--json'])).stdout).entries as {
      size: number;
      state: string;
    }[];
    // A plain ls lists the partial copies too (state `partial N%`).
    expect(all.filter((e) => e.state.startsWith('partial'))).toHaveLength(parts.length);
    const complete = all.filter((e) => !e.state.startsWith('partial'));
    const onDisk = [...parts, ...complete].reduce((n, e) => n + e.size, 0);
    expect(onDisk).toBe(s.bytesFetched);

    const rank0 = await loadRank(cache, 0, 2);
    expect(rank0.originBytes).toBe(0);
    expect(rank0.got.size).toBe(specs.size);
    for (const [name, b] of rank0.got) expect(Buffer.compare(b, expectedSlice(name, 0, 2)), name).toBe(0);
    // Rank 1's slices were not warmed: its load must go to the origin.
    const rank1 = await loadRank(cache, 1, 2);
    expect(rank1.originBytes).toBeGreaterThan(0);
    for (const [name, b] of rank1.got) expect(Buffer.compare(b, expectedSlice(name, 1, 2)), name).toBe(0);
  });

  it('--tensors warms only the named tensors (a prefix resolves to its index)', async () => {
    const cache = join(work, 'layer0');
    const r = await tierkit([
      'warm',
      '--cache',
      cache,
      '--origin',
      originUrl,
      'tp/',
      '--tensors',
      'model.layers.0.*',
      '--tensors',
      'lm_head.weight',
      '--block-size',
      '16KiB',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ tensors: 9, sliced: 0, rank: 0, worldSize: 1 });
    const picked = ['model.layers.0.*', 'lm_head.weight'];
    const model = await openModel(
      createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) }),
      'tp/model.safetensors.index.json',
    );
    expect(s.bytesFetched).toBe(blockBytesOf(model.rankByteRanges({ tensors: picked })));
    const load = await loadRank(cache, undefined, 1, picked);
    expect(load.originBytes).toBe(0);
    expect([...load.got.keys()].sort()).toEqual(
      [...specs.keys()].filter((n) => n.startsWith('model.layers.0.') || n === 'lm_head.weight').sort(),
    );
    for (const [name, b] of load.got) expect(Buffer.compare(b, tensorBytes.get(name)!), name).toBe(0);
  });

  it('--dry-run plans without warming tensor bytes; the text output names each file', async () => {
    const cache = join(work, 'dry');
    const r = await tierkit([
      'warm',
      '--cache',
      cache,
      '--origin',
      originUrl,
      'tp/model-00001-of-00002.safetensors',
      'tp/model-00002-of-00002.safetensors',
      '--rank',
      '1',
      '--world-size',
      '2',
      '--split',
      '*_proj.weight=0',
      '--dry-run',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/planned +tp\/model-00001-of-00002\.safetensors/);
    expect(r.stdout).toMatch(/rank 1 of 2: 27 tensors \(21 sliced\)/);
  });

  it('refuses bad rank, world size and split settings as usage errors; a missing tensor is an error', async () => {
    const base = [
      'warm',
      '--cache',
      join(work, 'bad'),
      '--origin',
      originUrl,
      'tp/model.safetensors.index.json',
    ];
    const cases: [string[], RegExp][] = [
      [['--rank', '0'], /--rank and --world-size go together/],
      [['--rank', '2', '--world-size', '2'], /--rank 2 is not below --world-size 2/],
      [['--rank', 'x', '--world-size', '2'], /--rank must be an integer/],
      [['--split', 'megatron'], /--split needs --rank and --world-size/],
      [['--rank', '0', '--world-size', '2', '--split', 'q_proj'], /expected PATTERN=DIM/],
      [['--rank', '0', '--world-size', '2', '--split', 'a=b'], /DIM must be an integer/],
    ];
    for (const [extra, msg] of cases) {
      const r = await tierkit([...base, ...extra]);
      expect(r.code, `${extra.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const missing = await tierkit([...base, '--tensors', 'no.such.tensor', '--json']);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.stdout).error.code).toBe('NOT_FOUND');
  });
});

describe('split rules', () => {
  it('megatron splits column- and row-parallel Llama layers and replicates the rest', () => {
    const dimOf = (n: string) =>
      MEGATRON_SLICES.find((r) => (r.pattern as RegExp).test(n))?.dim ?? 'replicated';
    expect(dimOf('model.layers.3.self_attn.q_proj.weight')).toBe(0);
    expect(dimOf('model.layers.3.mlp.up_proj.weight')).toBe(0);
    expect(dimOf('model.embed_tokens.weight')).toBe(0);
    expect(dimOf('lm_head.weight')).toBe(0);
    expect(dimOf('model.layers.3.self_attn.o_proj.weight')).toBe(1);
    expect(dimOf('model.layers.3.mlp.down_proj.weight')).toBe(1);
    expect(dimOf('model.layers.3.input_layernorm.weight')).toBe('replicated');
    expect(dimOf('model.layers.3.self_attn.o_proj.bias')).toBe('replicated');
    expect(dimOf('blk.3.attn_q.weight')).toBe(0);
    expect(dimOf('blk.3.ffn_down.weight')).toBe(1);
    expect(parseSplitRules(['*.w=-1', 'megatron'])[0]).toEqual({ pattern: '*.w', dim: -1 });
  });
});
