/**
 * Tensor-parallel loads in separate processes (dist/main.js --worker; build
 * first): each rank gets exactly its slices; through one shared cache every
 * origin block is fetched once, and the origin sends exactly the blocks of
 * the union of the ranks' ranges; a rank on its own node fetches only its
 * blocks. Then a program that does not use tierkit (Python, stdlib only)
 * reads the cached files and finds the same tensors.
 */
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Model, openModel, prewarmRanges, type SliceRule } from '@tierkit/model';
import { type ByteRange, createStack, type MetricsTier, withMetrics } from '@tierkit/tier-core';
import { FsTier } from '@tierkit/tier-fs';
import type { LocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RankJob, RankReport } from './rank.js';
import { referenceSlice } from './reference.js';
import {
  GGUF_NAME,
  GGUF_SLICES,
  INDEX_NAME,
  modelFiles,
  planModel,
  SAFETENSORS_SLICES,
  tensorContent,
} from './synthetic.js';
import { blockBytes, s3Tier, seededS3 } from './test-setup.js';

const run = promisify(execFile);
const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const script = fileURLToPath(new URL('./read_model.py', import.meta.url));
const BLOCK = 32 * 1024;
/** The model reader's default first read of each file. */
const PROBE = 256 * 1024;

const model = planModel(6 * 1024 * 1024, 3);
let server: LocalS3;
let origin: RankJob['origin'];
let sharded: Model;
let gguf: Model;
let dir = '';

beforeAll(async () => {
  ({ server, origin } = await seededS3(model, 'tp'));
  const s3 = s3Tier(server, 'tp');
  sharded = await openModel(s3, INDEX_NAME);
  gguf = await openModel(s3, GGUF_NAME);
  dir = await mkdtemp(join(tmpdir(), 'tierkit-tp-'));
});
afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function worker(rank: number, cacheDir: string): Promise<RankReport> {
  const job: RankJob = {
    origin,
    cacheDir,
    blockSize: BLOCK,
    rank,
    worldSize: 2,
    formats: ['safetensors', 'gguf'],
    maxBytesInFlight: 1024 * 1024,
    verify: true,
    digests: true,
  };
  const { stdout } = await run(process.execPath, ['--no-warnings', main, '--worker', JSON.stringify(job)]);
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as RankReport;
}

/** Per file: the ranges the given ranks read (headers and the first probe included), merged. */
function rangesOf(ranks: number[]): Map<string, { ranges: ByteRange[]; size: number }> {
  const out = new Map<string, { ranges: ByteRange[]; size: number }>();
  const add = (key: string, size: number, r: ByteRange[]) => {
    const e = out.get(key) ?? { ranges: [], size };
    e.ranges.push(...r);
    out.set(key, e);
  };
  add(INDEX_NAME, model.index.byteLength, [{ offset: 0, length: model.index.byteLength }]);
  for (const [m, slices] of [
    [sharded, SAFETENSORS_SLICES],
    [gguf, GGUF_SLICES],
  ] as [Model, readonly SliceRule[]][]) {
    for (const f of m.files) add(f.key, f.size, [{ offset: 0, length: Math.min(PROBE, f.size) }]);
    for (const rank of ranks) {
      for (const [key, list] of m.rankByteRanges({ rank, worldSize: 2, slices })) {
        add(key, m.files.find((f) => f.key === key)?.size ?? m.index!.size, list);
      }
    }
  }
  return out;
}

function expectedOrigin(ranks: number[]): number {
  let n = 0;
  for (const { ranges, size } of rangesOf(ranks).values()) n += blockBytes(ranges, size, BLOCK);
  return n;
}

/** What each rank must receive: the reference slice of the generated tensor, as sha256. */
function expectedDigests(rank: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [m, slices] of [
    [sharded, SAFETENSORS_SLICES],
    [gguf, GGUF_SLICES],
  ] as [Model, readonly SliceRule[]][]) {
    for (const part of m.plan({ rank, worldSize: 2, slices })) {
      const t = part.tensor;
      const whole = tensorContent(t.file, t.name, t.length);
      const bytes = part.slice ? referenceSlice(t, whole, part.slice.dim, rank, 2) : whole;
      out[t.name] = createHash('sha256').update(bytes).digest('hex');
    }
  }
  return out;
}

describe('tensor-parallel ranks in separate processes', () => {
  it('a rank on its own node fetches only the blocks of its slices', async () => {
    const [r0, r1] = await Promise.all([worker(0, join(dir, 'node0')), worker(1, join(dir, 'node1'))]);
    for (const [rank, r] of [r0!, r1!].entries()) {
      expect(r.mismatches).toEqual([]);
      expect(r.digests).toEqual(expectedDigests(rank));
      expect(r.originBytes).toBe(expectedOrigin([rank]));
      expect(r.originBytes).toBeLessThan(model.size);
    }
    // Row-split tensors give each node only half of their blocks.
    expect(r0!.originBytes + r1!.originBytes).toBeGreaterThan(model.size);
  });

  it('two ranks over one cache: the origin sends the union of their blocks, each once; warm sends nothing', async () => {
    const shared = join(dir, 'shared');
    const cold = await Promise.all([worker(0, shared), worker(1, shared)]);
    for (const [rank, r] of cold.entries()) {
      expect(r.mismatches).toEqual([]);
      expect(r.digests).toEqual(expectedDigests(rank));
    }
    const union = expectedOrigin([0, 1]);
    expect(cold[0]!.originBytes + cold[1]!.originBytes).toBe(union);
    // Split tensors are fetched once for both ranks: less than two nodes fetch between them.
    expect(union).toBeLessThan(expectedOrigin([0]) + expectedOrigin([1]));

    const warm = await Promise.all([worker(0, shared), worker(1, shared)]);
    for (const [rank, r] of warm.entries()) {
      expect(r.originBytes).toBe(0);
      expect(r.digests).toEqual(expectedDigests(rank));
    }
  });

  it('pre-warming a rank (what `tierkit warm --rank` does) leaves its load nothing to fetch', async () => {
    const cacheDir = join(dir, 'prewarmed');
    const origin = withMetrics()(s3Tier(server, 'tp')) as MetricsTier;
    const stack = createStack([new FsTier({ root: cacheDir, name: 'cache' }), origin], { blockSize: BLOCK });
    try {
      let warmed = 0;
      for (const [key, slices] of [
        [INDEX_NAME, SAFETENSORS_SLICES],
        [GGUF_NAME, GGUF_SLICES],
      ] as const) {
        const m = await openModel(stack, key);
        const ranges = m.rankByteRanges({ rank: 0, worldSize: 2, slices });
        warmed += (await prewarmRanges(stack, ranges, { blockSize: BLOCK })).bytes;
      }
      expect(warmed).toBeGreaterThan(0);
      expect(origin.metrics.bytesRead).toBe(expectedOrigin([0]));
    } finally {
      await stack.close();
    }
    const r = await worker(0, cacheDir);
    expect(r.originBytes).toBe(0);
    expect(r.digests).toEqual(expectedDigests(0));
  });

  const python = spawnSync('python3', ['--version']).status === 0;
  it.skipIf(!python)(
    'the cached files are plain model files: Python (stdlib only) reads the same tensors (skipped without python3)',
    async () => {
      // Its own cache, loaded here by both ranks: the test needs no other test to have run first.
      const cache = join(dir, 'python');
      await Promise.all([worker(0, cache), worker(1, cache)]);
      const paths = [...modelFiles(model).map((f) => f.name)].map((k) => join(cache, k));
      // Both ranks together read every block of every file, so each was published complete.
      for (const [i, p] of paths.entries())
        expect((await stat(p)).size).toBe(modelFiles(model)[i]!.plan.size);
      const { stdout } = await run('python3', [script, ...paths]);
      const seen = JSON.parse(stdout) as Record<string, Record<string, string>>;
      for (const [i, f] of modelFiles(model).entries()) {
        const want: Record<string, string> = {};
        for (const t of f.plan.tensors) {
          want[t.name] = createHash('sha256')
            .update(tensorContent(f.name, t.name, t.length))
            .digest('hex');
        }
        expect(seen[paths[i]!]).toEqual(want);
      }
    },
  );
});
