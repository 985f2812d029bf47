/**
 * A model opened through a tier: one file (safetensors or GGUF), several, or
 * a Hugging Face sharded index. Headers are read once at open; tensors are
 * read by name, into caller buffers, or streamed; every read goes through the
 * tier, so a stack caches exactly the blocks that were read.
 */
import { type ByteRange, type Tier, TierError } from '@tierkit/tier-core';
import { formatError, invalidArgument } from './errors.js';
import {
  type LoadedTensor,
  type ReadTuning,
  readPart,
  resolveTuning,
  type StreamOptions,
  streamParts,
} from './load.js';
import { DEFAULT_PROBE_BYTES, type OpenFileOptions, openModelFile } from './open-file.js';
import { planParts, type SelectOptions } from './select.js';
import { isIndexKey, readShardIndex, type ShardIndex } from './shard-index.js';
import { type SliceSpec, sliceTensor, type TensorPart, wholeTensor } from './slice.js';
import { type ReadEvent, StatsCounter } from './stats.js';
import type { LoadStats, ModelFile, TensorInfo } from './types.js';

export interface OpenModelOptions extends OpenFileOptions {
  /** Headers read at once when a model has many files (default 8). */
  readonly openConcurrency?: number;
  /** Called after every read this model makes (headers and tensors), e.g. to move a progress bar. */
  readonly onRead?: (event: ReadEvent) => void;
}

export interface ReadTensorOptions extends ReadTuning {
  /** Read only this rank's slice. */
  readonly slice?: SliceSpec;
}

export interface LoadOptions extends SelectOptions, StreamOptions {}

export interface RankRangesOptions extends SelectOptions {
  /** Include each file's header bytes (default true: a loader reads them to open the model). */
  readonly headers?: boolean;
}

/**
 * Opens a model: `key` is a `.safetensors` or `.gguf` file, a
 * `*.index.json` sharded index, or a list of files.
 */
export async function openModel(
  tier: Tier,
  key: string | readonly string[],
  options: OpenModelOptions = {},
): Promise<Model> {
  const stats = new StatsCounter(options.onRead);
  let index: ShardIndex | undefined;
  let keys: readonly string[];
  if (typeof key === 'string' && isIndexKey(key)) {
    index = await readShardIndex(tier, key, stats, options.signal);
    keys = [...index.shards].sort();
  } else {
    keys = typeof key === 'string' ? [key] : key;
  }
  if (keys.length === 0) throw invalidArgument('a model needs at least one file');
  if (new Set(keys).size !== keys.length) throw invalidArgument('a model file is named twice');
  const limit = options.openConcurrency ?? 8;
  const files: ModelFile[] = new Array(keys.length);
  let at = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, keys.length) }, async () => {
      while (at < keys.length) {
        const i = at++;
        files[i] = await openModelFile(tier, keys[i]!, stats, options);
      }
    }),
  );
  return new Model(tier, files, index, stats, options.probeBytes ?? DEFAULT_PROBE_BYTES);
}

export class Model {
  /** Tensors by name, in load order (files in order, each by offset). */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly #stats: StatsCounter;

  constructor(
    readonly tier: Tier,
    readonly files: readonly ModelFile[],
    readonly index: ShardIndex | undefined,
    stats: StatsCounter,
    /** The first read of each file at open: a rank's ranges include it, so pre-warming covers opening too. */
    readonly probeBytes = DEFAULT_PROBE_BYTES,
  ) {
    this.#stats = stats;
    const map = new Map<string, TensorInfo>();
    for (const f of files) {
      for (const t of f.tensors) {
        if (map.has(t.name)) {
          throw formatError('DUPLICATE', f.key, `tensor '${t.name}' is also in ${map.get(t.name)!.file}`, {
            tensor: t.name,
          });
        }
        if (index && index.weightMap.get(t.name) !== f.key) {
          throw formatError(
            'INDEX',
            index.key,
            `tensor '${t.name}' of ${f.key} is not mapped to it by the index`,
            {
              tensor: t.name,
            },
          );
        }
        map.set(t.name, t);
      }
    }
    if (index) {
      for (const [name, file] of index.weightMap) {
        if (!map.has(name)) {
          throw formatError(
            'INDEX',
            index.key,
            `the index maps '${name}' to ${file}, which does not hold it`,
            {
              tensor: name,
            },
          );
        }
      }
    }
    this.tensors = map;
  }

  /** Total bytes of tensor data. */
  get tensorBytes(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.length;
    return n;
  }

  tensor(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new TierError('NOT_FOUND', `the model has no tensor named '${name}'`, { retryable: false });
    return t;
  }

  /** What a load with these options would read, tensor by tensor, in file order. */
  plan(options: SelectOptions = {}): TensorPart[] {
    return planParts([...this.tensors.values()], this.tensors, options);
  }

  /** Reads a tensor (or a slice of it) into `target`; resolves to the filled view of it. */
  async readTensorInto(
    name: string,
    target: Uint8Array,
    options: ReadTensorOptions = {},
  ): Promise<Uint8Array> {
    const t = this.tensor(name);
    const part = options.slice ? sliceTensor(t, options.slice) : wholeTensor(t);
    return readPart(this.tier, part, target, this.#stats, resolveTuning(options), options.signal);
  }

  async readTensor(name: string, options: ReadTensorOptions = {}): Promise<LoadedTensor> {
    const t = this.tensor(name);
    const part = options.slice ? sliceTensor(t, options.slice) : wholeTensor(t);
    const bytes = await readPart(
      this.tier,
      part,
      new Uint8Array(part.length),
      this.#stats,
      resolveTuning(options),
      options.signal,
    );
    return { name, tensor: t, dtype: t.dtype, shape: part.shape, bytes, slice: part.slice };
  }

  /**
   * Streams the chosen tensors (or this rank's slices) in file order as they
   * arrive: `for await (const t of model.load({ maxBytesInFlight }))`.
   */
  load(options: LoadOptions = {}): AsyncGenerator<LoadedTensor> {
    return streamParts(this.tier, this.plan(options), this.#stats, options);
  }

  /**
   * The byte ranges of each file that opening the model and a load with
   * these options read (sorted, adjacent ranges merged; with `headers`, the
   * index and each file's first `probeBytes` too): what to pre-warm for one rank.
   */
  rankByteRanges(options: RankRangesOptions = {}): Map<string, ByteRange[]> {
    const byFile = new Map<string, { offset: number; length: number }[]>();
    const add = (file: string, offset: number, length: number) => {
      if (length === 0) return;
      let list = byFile.get(file);
      if (!list) {
        list = [];
        byFile.set(file, list);
      }
      list.push({ offset, length });
    };
    if (options.headers ?? true) {
      for (const f of this.files) add(f.key, 0, Math.max(f.dataOffset, Math.min(f.size, this.probeBytes)));
      // The index, which opening a sharded model reads whole.
      if (this.index) add(this.index.key, 0, this.index.size);
    }
    for (const part of this.plan(options))
      for (const r of part.runs) add(part.tensor.file, r.offset, r.length);
    const out = new Map<string, ByteRange[]>();
    if (this.index && byFile.has(this.index.key)) out.set(this.index.key, byFile.get(this.index.key)!);
    for (const f of this.files) {
      const list = byFile.get(f.key);
      if (list) out.set(f.key, mergeRanges(list));
    }
    return out;
  }

  /** Bytes and requests this model's reads made, per file and in total, since it was opened. */
  stats(): LoadStats {
    return this.#stats.snapshot();
  }
}

export function mergeRanges(list: readonly { offset: number; length: number }[]): ByteRange[] {
  const sorted = [...list].sort((a, b) => a.offset - b.offset);
  const out: { offset: number; length: number }[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else out.push({ ...r });
  }
  return out;
}

/**
 * The byte ranges, per file, that one rank's load reads (headers included):
 * what `tierkit warm --tensors … --rank r --world-size N` pre-warms.
 */
export async function rankByteRanges(
  tier: Tier,
  key: string | readonly string[],
  options: RankRangesOptions & OpenModelOptions = {},
): Promise<Map<string, ByteRange[]>> {
  const model = await openModel(tier, key, options);
  return model.rankByteRanges(options);
}
