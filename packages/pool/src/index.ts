/**
 * One worker-thread pool per process for tierkit's hot paths: large positioned
 * reads split across threads into one shared destination, and checksums (CRC-32
 * of blocks, sha256 of files) computed off the main thread. Every tier of a
 * process uses the same pool (`sharedPool()`), sized from the cores available.
 */
import { availableParallelism } from 'node:os';
import { TierError, throwIfAborted } from '@tierkit/tier-core';
import { Piscina } from 'piscina';

export interface PoolOptions {
  /** Worker threads (default: the cores available, at least 2). */
  readonly threads?: number;
  /** Bytes each read task moves (default 4 MiB). */
  readonly chunkSize?: number;
  /** An idle worker exits after this long (default 30 s); the pool starts one again when needed. */
  readonly idleTimeoutMs?: number;
}

export interface PoolStats {
  readonly threads: number;
  /** Tasks run since the pool started. */
  readonly completed: number;
  /** Tasks waiting for a thread. */
  readonly queued: number;
}

const MiB = 1024 * 1024;
const WORKER = new URL('../worker.mjs', import.meta.url).href;

/** Cores this process may use (at least 2: one thread reads while another copies). */
export function defaultThreads(): number {
  return Math.max(2, availableParallelism());
}

/** A zero-filled buffer on a SharedArrayBuffer: the one kind of destination pooled reads fill in place. */
export function sharedBytes(size: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(size));
}

/** True when the pool's threads can write into `view` directly (its memory is a SharedArrayBuffer). */
export function isShared(view: ArrayBufferView): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && view.buffer instanceof SharedArrayBuffer;
}

export class ReadPool {
  readonly threads: number;
  readonly chunkSize: number;
  readonly #piscina: Piscina;
  #closed = false;

  constructor(options: PoolOptions = {}) {
    const threads = options.threads ?? defaultThreads();
    const chunk = options.chunkSize ?? 4 * MiB;
    if (!(Number.isInteger(threads) && threads >= 1)) throw invalid(`threads must be ≥ 1, got ${threads}`);
    if (!(Number.isInteger(chunk) && chunk >= 4096)) throw invalid(`chunkSize must be ≥ 4096, got ${chunk}`);
    this.threads = threads;
    this.chunkSize = chunk;
    this.#piscina = new Piscina({
      filename: WORKER,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: options.idleTimeoutMs ?? 30_000,
      // One task per thread at a time: a read task blocks its thread anyway.
      concurrentTasksPerWorker: 1,
    });
  }

  get stats(): PoolStats {
    return { threads: this.threads, completed: this.#piscina.completed, queued: this.#piscina.queueSize };
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Fills `target` (SharedArrayBuffer-backed) from `fd` at `position`, in
   * `chunkSize` pieces on every thread at once. Resolves to the bytes read:
   * fewer than asked only when the file ends first. `fd` must stay open until
   * this settles (it does, even when aborted: in-flight pieces are waited for).
   */
  async readInto(fd: number, target: Uint8Array, position: number, signal?: AbortSignal): Promise<number> {
    this.#assertOpen();
    if (!isShared(target)) {
      throw invalid('ReadPool.readInto needs a SharedArrayBuffer-backed target (see sharedBytes())');
    }
    const length = target.byteLength;
    const parts = Math.max(1, Math.ceil(length / this.chunkSize));
    const got = new Array<number>(parts).fill(0);
    let next = 0;
    let failed: unknown;
    const lane = async () => {
      for (let i = next++; i < parts && failed === undefined; i = next++) {
        if (signal?.aborted) {
          failed = signal.reason;
          return;
        }
        const start = i * this.chunkSize;
        const len = Math.min(this.chunkSize, length - start);
        try {
          got[i] = (await this.#piscina.run({
            op: 'read',
            fd,
            buffer: target.buffer,
            byteOffset: target.byteOffset + start,
            length: len,
            position: position + start,
          })) as number;
        } catch (err) {
          failed ??= err;
        }
      }
    };
    // Lanes wait for their own piece before taking the next: nothing is left running on `fd` when this settles.
    await Promise.all(Array.from({ length: Math.min(parts, this.threads) }, lane));
    if (failed !== undefined) {
      throwIfAborted(signal);
      throw failed;
    }
    let total = 0;
    for (let i = 0; i < parts; i++) {
      total += got[i]!;
      if (got[i]! < Math.min(this.chunkSize, length - i * this.chunkSize)) break;
    }
    return total;
  }

  /** CRC-32 (zlib's) of each `[position, length]` range of `fd`, -1 where the file ends inside a range. */
  async crc32(fd: number, ranges: ReadonlyArray<readonly [number, number]>): Promise<number[]> {
    this.#assertOpen();
    if (ranges.length === 0) return [];
    // One batch per thread, so a few hundred blocks cost a few messages.
    const per = Math.ceil(ranges.length / this.threads);
    const batches: Promise<number[]>[] = [];
    for (let i = 0; i < ranges.length; i += per) {
      const flat: number[] = [];
      for (const [p, l] of ranges.slice(i, i + per)) flat.push(p, l);
      batches.push(this.#piscina.run({ op: 'crc32', fd, ranges: flat }) as Promise<number[]>);
    }
    return (await Promise.all(batches)).flat();
  }

  /** sha256 (hex) of `length` bytes of `fd` from `position` (to the end of the file when omitted). */
  async sha256(fd: number, position = 0, length = -1): Promise<{ hex: string; size: number }> {
    this.#assertOpen();
    return (await this.#piscina.run({ op: 'sha256', fd, position, length })) as { hex: string; size: number };
  }

  /**
   * Writes `source` (SharedArrayBuffer-backed) at `position` on a worker;
   * resolves to its CRC-32 when `crc` is set (else 0).
   */
  async write(fd: number, source: Uint8Array, position: number, crc = false): Promise<number> {
    this.#assertOpen();
    if (!isShared(source)) throw invalid('ReadPool.write needs a SharedArrayBuffer-backed source');
    return (await this.#piscina.run({
      op: 'write',
      fd,
      buffer: source.buffer,
      byteOffset: source.byteOffset,
      length: source.byteLength,
      position,
      crc,
    })) as number;
  }

  /** Waits for running tasks, then stops the threads. Later calls reject with CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#piscina.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new TierError('CLOSED', 'the worker pool is closed', { retryable: false });
  }
}

// One pool per process even when two copies of this package are loaded.
const SHARED = Symbol.for('tierkit.pool.shared');
type Holder = { [SHARED]?: ReadPool };

/**
 * The process's pool, started on first use with `options` (later options are
 * ignored while it runs). Threads are unreferenced while idle: an idle pool
 * never keeps the process alive.
 */
export function sharedPool(options?: PoolOptions): ReadPool {
  const g = globalThis as Holder;
  let pool = g[SHARED];
  if (!pool || pool.closed) {
    pool = new ReadPool(options);
    g[SHARED] = pool;
  }
  return pool;
}

/** Closes the process's pool if one was started (a later `sharedPool()` starts a new one). */
export async function closeSharedPool(): Promise<void> {
  const g = globalThis as Holder;
  const pool = g[SHARED];
  g[SHARED] = undefined;
  await pool?.close();
}

function invalid(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', message, { retryable: false });
}
