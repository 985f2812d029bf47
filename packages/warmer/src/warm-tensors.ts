/**
 * Pre-warming what one tensor-parallel rank will load: the model's headers,
 * the tensors chosen by name, and of each split tensor only the slice the rank
 * reads — so a block-granular cache ends up holding exactly the blocks that
 * rank's load touches, and the load then fetches nothing from the origin.
 */
import {
  compilePattern,
  type Model,
  openModel,
  prewarmRanges,
  type SliceRule,
  type TensorPattern,
} from '@tierkit/model';
import { type ByteRange, type StackTier, type Tier, TierError } from '@tierkit/tier-core';

/** The stack's default fill block size (tier-core's createStack). */
export const DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024;

export interface WarmTensorsOptions {
  /** Tensor names or globs (`model.layers.*`), or RegExps; default every tensor. */
  readonly tensors?: readonly TensorPattern[];
  readonly rank?: number;
  readonly worldSize?: number;
  /** Split rules (first match wins); tensors no rule matches are read whole. */
  readonly slices?: readonly SliceRule[];
  /** The block size of the stack being warmed (default tier-core's 8 MiB). */
  readonly blockSize?: number;
  /** Reads in flight (default 8). */
  readonly concurrency?: number;
  /** Plan only: open the model (its headers are read and so cached), warm no tensor bytes. */
  readonly dryRun?: boolean;
  readonly signal?: AbortSignal;
  readonly onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export interface WarmTensorsFile {
  readonly key: string;
  readonly size: number;
  /** Merged byte ranges the rank reads in this file. */
  readonly ranges: number;
  readonly bytes: number;
  /** Bytes of the cache blocks those ranges touch (what a cold cache fetches). */
  readonly blockBytes: number;
}

export interface WarmTensorsSummary {
  /** The model's files as opened (an index, or the files themselves). */
  readonly model: readonly string[];
  readonly rank: number;
  readonly worldSize: number;
  /** Tensors chosen, and of those how many a split rule sliced. */
  readonly tensors: number;
  readonly sliced: number;
  readonly files: readonly WarmTensorsFile[];
  /** Bytes of the ranges, and of the blocks they touch. */
  readonly bytesPlanned: number;
  readonly blockBytes: number;
  /** Bytes read through the stack (ranges merged over whole blocks). */
  readonly bytesRead: number;
  readonly requests: number;
  /** Bytes that came from the origin (its own count when it keeps one, else the stack's block fills). */
  readonly bytesFetched: number;
  readonly modelBytes: number;
  readonly elapsedMs: number;
  readonly dryRun: boolean;
  readonly ok: boolean;
}

interface ByteCounting {
  readonly bytesRead: number;
}

function originCounter(stack: Tier): ByteCounting | undefined {
  const tiers = (stack as Partial<StackTier>).tiers;
  const last = tiers?.[tiers.length - 1] as Partial<ByteCounting> | undefined;
  return typeof last?.bytesRead === 'number' ? (last as ByteCounting) : undefined;
}

function blockFetched(stack: Tier): number | undefined {
  const s = (stack as Partial<StackTier>).stats;
  return typeof s === 'function' ? s.call(stack).blockBytesFetched : undefined;
}

/** Bytes of the blocks of `size`-byte file that `ranges` touch. */
export function touchedBlockBytes(ranges: readonly ByteRange[], size: number, blockSize: number): number {
  const blocks = new Set<number>();
  for (const r of ranges) {
    const len = r.length ?? size - r.offset;
    if (len <= 0) continue;
    const first = Math.floor(r.offset / blockSize);
    const last = Math.floor((r.offset + len - 1) / blockSize);
    for (let b = first; b <= last; b++) blocks.add(b);
  }
  let n = 0;
  for (const b of blocks) n += Math.min(blockSize, size - b * blockSize);
  return n;
}

function fileSizes(model: Model): Map<string, number> {
  const sizes = new Map(model.files.map((f) => [f.key, f.size]));
  if (model.index) sizes.set(model.index.key, model.index.size);
  return sizes;
}

/**
 * Opens `key` (a `.safetensors`/`.gguf` file, a `*.index.json`, or a list of
 * files) through `stack` and warms the byte ranges rank `rank` of `worldSize`
 * loads with these options.
 */
export async function warmTensors(
  stack: Tier,
  key: string | readonly string[],
  options: WarmTensorsOptions = {},
): Promise<WarmTensorsSummary> {
  const started = Date.now();
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!Number.isSafeInteger(blockSize) || blockSize < 1) {
    throw new TierError('INVALID_ARGUMENT', `blockSize must be an integer ≥ 1, got ${blockSize}`, {
      retryable: false,
    });
  }
  const counter = originCounter(stack);
  const counterStart = counter?.bytesRead ?? 0;
  const blockStart = blockFetched(stack) ?? 0;
  const model = await openModel(stack, key, { signal: options.signal });
  const select = {
    ...(options.tensors ? { tensors: options.tensors } : {}),
    rank: options.rank ?? 0,
    worldSize: options.worldSize ?? 1,
    slices: options.slices ?? [],
  };
  const ranges = model.rankByteRanges(select);
  const all = [...model.tensors.keys()];
  const tests = options.tensors?.map(compilePattern);
  const chosen = tests ? all.filter((n) => tests.some((t) => t(n))) : all;
  const rules = (select.worldSize > 1 ? select.slices : []).map((r) => compilePattern(r.pattern));
  const sliced = chosen.filter((n) => rules.some((m) => m(n))).length;
  const sizes = fileSizes(model);
  const files: WarmTensorsFile[] = [...ranges].map(([file, list]) => {
    const size = sizes.get(file) ?? 0;
    return {
      key: file,
      size,
      ranges: list.length,
      bytes: list.reduce((n, r) => n + (r.length ?? 0), 0),
      blockBytes: touchedBlockBytes(list, size, blockSize),
    };
  });
  const result = options.dryRun
    ? { bytes: 0, requests: 0 }
    : await prewarmRanges(stack, ranges, {
        blockSize,
        ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      });
  const bytesFetched = counter
    ? counter.bytesRead - counterStart
    : (blockFetched(stack) ?? blockStart) - blockStart;
  return {
    model: typeof key === 'string' ? [key] : [...key],
    rank: select.rank,
    worldSize: select.worldSize,
    tensors: chosen.length,
    sliced,
    files,
    bytesPlanned: files.reduce((n, f) => n + f.bytes, 0),
    blockBytes: files.reduce((n, f) => n + f.blockBytes, 0),
    bytesRead: result.bytes,
    requests: result.requests,
    bytesFetched,
    modelBytes: [...sizes.values()].reduce((a, b) => a + b, 0),
    elapsedMs: Date.now() - started,
    dryRun: options.dryRun === true,
    ok: true,
  };
}
