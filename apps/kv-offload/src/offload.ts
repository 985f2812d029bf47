/**
 * The sample's work: conversations whose turns share a system prompt and grow
 * their own history, served the way an engine with LMCache serves them — look up
 * the cached prefix, load it, "compute" the rest and offload it — through a
 * memory tier over a disk tier (fs, gds or 3fs on their POSIX paths).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type KvChunk, KvStore } from '@tierkit/kv';
import { Hf3fsTier } from '@tierkit/tier-3fs';
import { createMemoryTier, createStack, MapLruPolicy, type Tier, withMetrics } from '@tierkit/tier-core';
import { FsTier } from '@tierkit/tier-fs';
import { GdsTier } from '@tierkit/tier-gds';

export type DiskKind = 'fs' | 'gds' | '3fs';

export interface OffloadOptions {
  readonly dir: string;
  readonly disk: DiskKind;
  readonly conversations: number;
  readonly turns: number;
  /** Tokens of the system prompt every conversation starts with. */
  readonly systemTokens: number;
  /** New tokens each turn adds (the user's message and the model's answer). */
  readonly turnTokens: number;
  readonly chunkSize: number;
  /** Bytes of KV cache per token (an 8B model in bf16: 128 KiB). */
  readonly bytesPerToken: number;
  /** Capacity of the memory tier. */
  readonly memoryBytes: number;
  readonly log: (line: string) => void;
}

export interface OffloadSummary {
  readonly requests: number;
  readonly chunks: number;
  readonly hitChunks: number;
  readonly tokens: number;
  readonly hitTokens: number;
  readonly bytesLoaded: number;
  readonly bytesStored: number;
  /** Bytes read from / written to the disk tier. */
  readonly diskBytesRead: number;
  readonly diskBytesWritten: number;
  readonly memoryHits: number;
  readonly diskHits: number;
  readonly verifiedChunks: number;
  readonly seconds: number;
}

/** The synthetic KV bytes of a chunk: a function of its hash, so a reload can be checked. */
export function kvBytesOf(chunk: KvChunk, bytesPerToken: number): Uint8Array {
  const n = (chunk.end - chunk.start) * bytesPerToken;
  const words = new Uint32Array(Math.ceil(n / 4));
  // xorshift32 seeded by the hash: cheap to make, different for every chunk.
  let x = Number.parseInt(chunk.hash.slice(0, 8), 16) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return new Uint8Array(words.buffer, 0, n);
}

function tokens(seed: number, n: number): number[] {
  let x = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % 128_256;
  });
}

async function openDisk(kind: DiskKind, dir: string): Promise<Tier> {
  await mkdir(dir, { recursive: true });
  // Chunks are content-addressed: cached descriptors need no per-read path check.
  if (kind === 'fs')
    return new FsTier({ root: join(dir, 'fs'), fsync: false, descriptorCheck: 'none' }).open();
  if (kind === 'gds') {
    const t = new GdsTier({ gdsPath: join(dir, 'gds'), useCufile: 'auto', fsync: false });
    await t.ready;
    return t;
  }
  return new Hf3fsTier({ mountPoint: dir, basePath: join(dir, '3fs'), useUsrbio: 'auto', fsync: false });
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
const pct = (a: number, b: number) => (b === 0 ? '0.0%' : `${((100 * a) / b).toFixed(1)}%`);

export async function runOffload(o: OffloadOptions): Promise<OffloadSummary> {
  const started = performance.now();
  const policy = new MapLruPolicy();
  const memory = withMetrics()(createMemoryTier({ name: 'memory', maxBytes: o.memoryBytes, policy }));
  const disk = withMetrics()(await openDisk(o.disk, o.dir));
  // KV chunks are named by their tokens and never change: nothing to revalidate.
  const stack = createStack([memory, disk], { validate: 'never' });
  const kv = new KvStore({
    tier: stack,
    model: 'meta-llama/Llama-3.1-8B-Instruct',
    chunkSize: o.chunkSize,
    policies: [policy],
  });
  o.log(
    `stack: memory (${mib(o.memoryBytes)}) over ${o.disk} at ${o.dir}; ${o.conversations} conversations × ${o.turns} turns, ` +
      `${o.chunkSize}-token chunks of ${mib(o.chunkSize * o.bytesPerToken)}`,
  );

  const system = tokens(1, o.systemTokens);
  const history = Array.from({ length: o.conversations }, () => [...system]);
  const s = {
    requests: 0,
    chunks: 0,
    hitChunks: 0,
    tokens: 0,
    hitTokens: 0,
    bytesLoaded: 0,
    bytesStored: 0,
    verifiedChunks: 0,
  };
  try {
    for (let turn = 0; turn < o.turns; turn++) {
      for (let c = 0; c < o.conversations; c++) {
        const seq = history[c]!;
        seq.push(...tokens(1000 * (c + 1) + turn, o.turnTokens));
        const chunks = kv.chunks(seq);
        const before = { disk: disk.metrics.bytesRead };
        const hit = await kv.contains(chunks);
        const into = chunks.slice(0, hit).map((ch) => new Uint8Array((ch.end - ch.start) * o.bytesPerToken));
        const got = await kv.get(chunks.slice(0, hit), { into });
        // Every loaded chunk must be exactly what was stored for its tokens.
        for (let i = 0; i < got.hits; i++) {
          if (!Buffer.from(got.chunks[i]!).equals(kvBytesOf(chunks[i]!, o.bytesPerToken))) {
            throw new Error(`chunk ${i} of conversation ${c} turn ${turn} came back different`);
          }
          s.verifiedChunks++;
        }
        // "Prefill" what was not cached (from the first chunk not loaded) and offload it.
        const rest = chunks.slice(got.hits);
        const put = await kv.put(
          rest,
          rest.map((ch) => kvBytesOf(ch, o.bytesPerToken)),
        );
        const hitTokens = got.hits === 0 ? 0 : chunks[got.hits - 1]!.end;
        s.requests++;
        s.chunks += chunks.length;
        s.hitChunks += got.hits;
        s.tokens += seq.length;
        s.hitTokens += hitTokens;
        s.bytesLoaded += got.bytes;
        s.bytesStored += put.bytes;
        o.log(
          `conv ${c} turn ${turn}: ${seq.length} tokens, ${chunks.length} chunks, prefix hit ${got.hits} ` +
            `(${pct(hitTokens, seq.length)} of tokens); loaded ${mib(got.bytes)} ` +
            `(${mib(disk.metrics.bytesRead - before.disk)} of it read from ${o.disk} and promoted), ` +
            `stored ${put.written} chunks ${mib(put.bytes)}`,
        );
      }
    }
  } finally {
    await stack.close();
  }
  const st = stack.stats();
  const summary: OffloadSummary = {
    ...s,
    diskBytesRead: disk.metrics.bytesRead,
    diskBytesWritten: disk.metrics.bytesWritten,
    memoryHits: st.hitsByTier.memory ?? 0,
    diskHits: st.promotions,
    seconds: (performance.now() - started) / 1000,
  };
  o.log(
    `summary: ${s.requests} requests, chunk hit rate ${pct(s.hitChunks, s.chunks)} (${s.hitChunks}/${s.chunks}), ` +
      `token hit rate ${pct(s.hitTokens, s.tokens)}; loaded ${mib(s.bytesLoaded)} (${summary.memoryHits - summary.diskHits} chunks ` +
      `from memory, ${summary.diskHits} promoted from ${o.disk}), stored ${mib(s.bytesStored)}; ` +
      `${o.disk} read ${mib(summary.diskBytesRead)}, written ${mib(summary.diskBytesWritten)}; ` +
      `${s.verifiedChunks} chunks verified byte-exact; ${summary.seconds.toFixed(2)} s`,
  );
  return summary;
}
