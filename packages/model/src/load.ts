/**
 * Streams tensors to a consumer in file order with many requests in flight.
 * Tensors are admitted while the bytes held (in flight, landed and not yet
 * taken, and the one the consumer holds) stay within `maxBytesInFlight`; a
 * tensor larger than the budget goes alone. The consumer's pace is the
 * back-pressure: nothing more is admitted until it asks for the next tensor.
 */
import { setMaxListeners } from 'node:events';
import { abortError, type Tier } from '@tierkit/tier-core';
import { invalidArgument } from './errors.js';
import { type Piece, type PieceOptions, piecesOf, readPiece } from './pieces.js';
import type { TensorPart } from './slice.js';
import type { StatsCounter } from './stats.js';
import type { TensorInfo } from './types.js';

export interface ReadTuning {
  /** Read requests in flight (default 16). */
  readonly concurrency?: number;
  /** Largest single request (default 8 MiB). */
  readonly pieceBytes?: number;
  /** Gaps up to this many bytes between a slice's runs are read through (default 64 KiB). */
  readonly coalesceBytes?: number;
  readonly signal?: AbortSignal;
}

export interface StreamOptions extends ReadTuning {
  /** Bytes of tensors held at once, fetched or being fetched (default 256 MiB). */
  readonly maxBytesInFlight?: number;
  /**
   * The buffer a tensor lands in (at least `part.length` bytes): your own
   * memory, filled in place. Default: a new Uint8Array per tensor.
   */
  readonly allocate?: (part: TensorPart) => Uint8Array;
}

/** A tensor (or this rank's slice of it) as it arrives. */
export interface LoadedTensor {
  readonly name: string;
  readonly tensor: TensorInfo;
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Exactly the tensor's (or slice's) bytes, as the file stores them. */
  readonly bytes: Uint8Array;
  readonly slice?: TensorPart['slice'];
}

export interface ResolvedTuning extends PieceOptions {
  readonly concurrency: number;
}

export function resolveTuning(o: ReadTuning): ResolvedTuning {
  const pos = (name: string, v: number | undefined, d: number, min = 1) => {
    const n = v ?? d;
    if (!Number.isSafeInteger(n) || n < min)
      throw invalidArgument(`${name} must be an integer ≥ ${min}, got ${v}`);
    return n;
  };
  const pieceBytes = pos('pieceBytes', o.pieceBytes, 8 * 1024 * 1024);
  return {
    concurrency: pos('concurrency', o.concurrency, 16),
    pieceBytes,
    coalesceBytes: pos('coalesceBytes', o.coalesceBytes, 64 * 1024, 0),
    scatterBytes: Math.min(pieceBytes, 1024 * 1024),
  };
}

/** Runs tasks with at most `limit` at once, first come first served. */
class RequestPool {
  #active = 0;
  readonly #queue: (() => void)[] = [];
  constructor(readonly limit: number) {}

  run<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        this.#active++;
        task()
          .then(resolve, reject)
          .finally(() => {
            this.#active--;
            this.#queue.shift()?.();
          });
      };
      if (this.#active < this.limit) start();
      else this.#queue.push(start);
    });
  }
}

function checkTarget(part: TensorPart, target: Uint8Array): Uint8Array {
  if (!(target instanceof Uint8Array) || target.byteLength < part.length) {
    throw invalidArgument(
      `tensor '${part.tensor.name}' needs a buffer of ${part.length} bytes, got ${target?.byteLength ?? 'none'}`,
    );
  }
  return target.subarray(0, part.length);
}

/** Reads one part into `target` with the pool's parallelism. */
export async function readPart(
  tier: Tier,
  part: TensorPart,
  target: Uint8Array,
  stats: StatsCounter,
  tuning: ResolvedTuning,
  signal: AbortSignal | undefined,
): Promise<Uint8Array> {
  const into = checkTarget(part, target);
  const pool = new RequestPool(tuning.concurrency);
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  const onAbort = () => ac.abort(abortError(signal));
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (signal?.aborted) throw abortError(signal, part.tensor.file);
    const tasks = piecesOf(part, tuning).map((p) =>
      pool
        .run(() => readPiece(tier, p, into, stats, ac.signal))
        .catch((err) => {
          ac.abort(err);
          throw err;
        }),
    );
    const settled = await Promise.allSettled(tasks);
    const failed = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
    stats.delivered(part.length);
    return into;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

interface Slot {
  readonly part: TensorPart;
  readonly done: Promise<Uint8Array>;
}

export async function* streamParts(
  tier: Tier,
  parts: readonly TensorPart[],
  stats: StatsCounter,
  options: StreamOptions,
): AsyncGenerator<LoadedTensor> {
  const tuning = resolveTuning(options);
  const budget = options.maxBytesInFlight ?? 256 * 1024 * 1024;
  if (!Number.isSafeInteger(budget) || budget < 1) {
    throw invalidArgument(`maxBytesInFlight must be an integer ≥ 1, got ${options.maxBytesInFlight}`);
  }
  const pool = new RequestPool(tuning.concurrency);
  const ac = new AbortController();
  // Every request in flight listens on it; their number is bounded by `concurrency`, not 10.
  setMaxListeners(0, ac.signal);
  const outer = options.signal;
  const onAbort = () => ac.abort(abortError(outer));
  outer?.addEventListener('abort', onAbort, { once: true });
  const slots: Slot[] = [];
  const running = new Set<Promise<unknown>>();
  let held = 0;
  let next = 0;

  const admit = () => {
    while (next < parts.length && !ac.signal.aborted) {
      const part = parts[next]!;
      if (held > 0 && held + part.length > budget) return;
      held += part.length;
      next++;
      let target: Uint8Array;
      try {
        target = checkTarget(part, options.allocate ? options.allocate(part) : new Uint8Array(part.length));
      } catch (err) {
        slots.push({ part, done: Promise.reject(err) });
        slots.at(-1)!.done.catch(() => {});
        ac.abort(err);
        return;
      }
      const reads = piecesOf(part, tuning).map((p: Piece) => {
        const r = pool.run(() => readPiece(tier, p, target, stats, ac.signal));
        running.add(r);
        r.then(
          () => running.delete(r),
          (err) => {
            running.delete(r);
            ac.abort(err);
          },
        );
        return r;
      });
      const done = Promise.all(reads).then(() => target);
      done.catch(() => {});
      slots.push({ part, done });
    }
  };

  try {
    if (outer?.aborted) throw abortError(outer);
    for (let i = 0; i < parts.length; i++) {
      admit();
      const slot = slots[i];
      // Nothing admitted at i: the load was aborted (by the caller's signal) while idle.
      if (!slot) throw ac.signal.reason instanceof Error ? ac.signal.reason : abortError(outer);
      let bytes: Uint8Array;
      try {
        bytes = await slot.done;
      } catch (err) {
        // The first failure (or the caller's abort, as ABORTED) stopped the rest: report it, not what it caused.
        throw ac.signal.reason instanceof Error ? ac.signal.reason : err;
      }
      stats.delivered(slot.part.length);
      const t = slot.part.tensor;
      yield {
        name: t.name,
        tensor: t,
        dtype: t.dtype,
        shape: slot.part.shape,
        bytes,
        slice: slot.part.slice,
      };
      // The consumer asked for the next one: this tensor's bytes are its own now.
      held -= slot.part.length;
      slots[i] = undefined as unknown as Slot;
    }
  } finally {
    outer?.removeEventListener('abort', onAbort);
    if (!ac.signal.aborted) ac.abort(abortError(undefined));
    // No read may still write into a buffer once the caller has moved on.
    await Promise.allSettled([...running]);
  }
}
