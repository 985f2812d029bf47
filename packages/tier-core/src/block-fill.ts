/**
 * Block-granular read-through: fills a partial copy in a BlockCache tier from
 * a source tier, fetching each block once — once in this process (one promise
 * per block) and once across processes (the partial's claims) — and only the
 * blocks readers ask for.
 *
 * Blocks asked for together are fetched together: consecutive missing blocks
 * become one ranged stream from the source (a span), written block by block
 * as its bytes arrive. Few long requests cost a server far less than many
 * short ones, and the source tier still parallelizes a span as it sees fit
 * (tier-s3 splits it into parallel ranged GETs).
 */
import { Readable } from 'node:stream';
import { TierError, throwIfAborted } from './errors.js';
import { sleep } from './layers/retry.js';
import type { PartialEntry, Tier } from './tier.js';

export interface BlockFillConfig {
  /** Spans fetched at once for one object. */
  readonly concurrency: number;
  /** Longest span, in bytes (whole blocks; at least one). */
  readonly spanBytes: number;
  /** How often to look for a block another process is fetching (ms). */
  readonly pollMs: number;
}

interface Pending {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function pending(): Pending {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Nobody may be waiting when a block fails: that is not an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export class BlockFill {
  readonly entry: PartialEntry;
  readonly #source: Tier;
  readonly #etag: string | undefined;
  readonly #config: BlockFillConfig;
  readonly #spanBlocks: number;
  /** Blocks being fetched or waited for, by this fill. */
  readonly #inflight = new Map<number, Pending>();
  /** Blocks asked for and not yet taken by a span worker, in the order asked. */
  #wanted: number[] = [];
  #workers = 0;
  /** Bytes fetched from the source by this fill. */
  fetchedBytes = 0;
  #published: Promise<unknown> | undefined;

  constructor(entry: PartialEntry, source: Tier, etag: string | undefined, config: BlockFillConfig) {
    this.entry = entry;
    this.#source = source;
    this.#etag = etag;
    this.#config = config;
    this.#spanBlocks = Math.max(1, Math.floor(config.spanBytes / entry.blockSize));
  }

  get complete(): boolean {
    for (let b = 0; b < this.entry.blockCount; b++) if (!this.entry.has(b)) return false;
    return true;
  }

  /** The blocks covering `length` bytes at `offset` (none for an empty range). */
  blocksOf(offset: number, length: number): [first: number, last: number] {
    if (length === 0) return [0, -1];
    const bs = this.entry.blockSize;
    return [Math.floor(offset / bs), Math.floor((offset + length - 1) / bs)];
  }

  /** Makes blocks `first`..`last` present, fetching the missing ones in spans. */
  async ensure(first: number, last: number, signal?: AbortSignal): Promise<void> {
    const waits: Promise<void>[] = [];
    for (let b = first; b <= last; b++) {
      if (!this.entry.has(b)) waits.push(this.#want(b));
    }
    this.#start();
    if (waits.length > 0)
      await this.#race(
        Promise.all(waits).then(() => undefined),
        signal,
      );
  }

  /** Makes one block present; concurrent callers share the work. */
  block(b: number, signal?: AbortSignal): Promise<void> {
    if (this.entry.has(b)) return Promise.resolve();
    const p = this.#want(b);
    this.#start();
    return this.#race(p, signal);
  }

  /** Waits until no block of this fill is being fetched (before the entry is closed). */
  async settle(): Promise<void> {
    // Blocks nobody took yet will not be fetched now: their waiters (if any) are told so.
    const dropped = this.#wanted;
    this.#wanted = [];
    for (const b of dropped) {
      this.#done(b, new TierError('ABORTED', `fill of '${this.entry.key}' closed`, { key: this.entry.key }));
    }
    while (this.#inflight.size > 0 || this.#workers > 0) {
      await Promise.allSettled([...this.#inflight.values()].map((p) => p.promise));
      if (this.#workers > 0) await sleep(1);
    }
  }

  /** Publishes the object once every block is present (once per fill). */
  publish(): Promise<unknown> {
    this.#published ??= this.entry.publish();
    return this.#published;
  }

  /**
   * A stream of `length` bytes at `offset`, each block handed on as soon as it
   * is present. `beforeEnd` runs before the stream ends (the stack publishes there).
   */
  stream(offset: number, length: number, signal?: AbortSignal, beforeEnd?: () => Promise<void>): Readable {
    const [first, last] = this.blocksOf(offset, length);
    const bs = this.entry.blockSize;
    let next = first;
    let asked = false;
    const readable: Readable = new Readable({
      highWaterMark: 2,
      read: () => {
        if (next > last) return;
        if (!asked) {
          // Ask for everything up front: the spans run ahead of the reader.
          asked = true;
          this.ensure(first, last).catch(() => undefined);
        }
        const b = next++;
        this.block(b, signal)
          .then(async () => {
            const start = Math.max(offset, b * bs);
            const end = Math.min(offset + length, (b + 1) * bs);
            const out = Buffer.allocUnsafe(end - start);
            await this.entry.readInto(out, start);
            return out;
          })
          .then(
            async (chunk) => {
              readable.push(chunk);
              if (b === last) {
                await beforeEnd?.();
                readable.push(null);
              }
            },
            (err) => readable.destroy(err),
          );
      },
    });
    if (first > last) {
      void (beforeEnd?.() ?? Promise.resolve()).finally(() => readable.push(null));
    }
    return readable;
  }

  // — internals —

  #race(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    if (!signal) return p;
    throwIfAborted(signal);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(new TierError('ABORTED', 'read aborted', { key: this.entry.key }));
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  #want(b: number): Promise<void> {
    let p = this.#inflight.get(b);
    if (!p) {
      p = pending();
      this.#inflight.set(b, p);
      this.#wanted.push(b);
    }
    return p.promise;
  }

  #done(b: number, err?: unknown): void {
    const p = this.#inflight.get(b);
    if (!p) return;
    this.#inflight.delete(b);
    if (err === undefined) p.resolve();
    else p.reject(err);
  }

  /** Starts span workers while there is wanted work and room. */
  #start(): void {
    while (this.#workers < this.#config.concurrency && this.#wanted.length > 0) {
      const span = this.#takeSpan();
      if (span.length === 0) break;
      this.#workers++;
      void this.#runSpan(span).finally(() => {
        this.#workers--;
        this.#start();
      });
    }
  }

  /** Takes the lowest wanted block and the wanted blocks right after it, up to a span. */
  #takeSpan(): number[] {
    this.#wanted.sort((a, b) => a - b);
    const first = this.#wanted.shift()!;
    const span = [first];
    while (span.length < this.#spanBlocks && this.#wanted[0] === span[span.length - 1]! + 1) {
      span.push(this.#wanted.shift()!);
    }
    return span;
  }

  async #runSpan(span: number[]): Promise<void> {
    const entry = this.entry;
    const mine: number[] = [];
    const theirs: number[] = [];
    try {
      await entry.refresh();
      const claimed: number[] = [];
      for (const b of span) {
        if (entry.has(b)) this.#done(b);
        else if (await entry.claim(b)) claimed.push(b);
        else theirs.push(b);
      }
      // A block another process finished (and released) while we claimed is not fetched again.
      if (claimed.length > 0) await entry.refresh();
      for (const b of claimed) {
        if (entry.has(b)) {
          await entry.release(b);
          this.#done(b);
        } else mine.push(b);
      }
      // Claimed blocks in contiguous runs, one ranged stream each.
      let run: number[] = [];
      for (const b of mine) {
        if (run.length > 0 && b !== run[run.length - 1]! + 1) {
          await this.#fetchRun(run);
          run = [];
        }
        run.push(b);
      }
      if (run.length > 0) await this.#fetchRun(run);
    } catch (err) {
      for (const b of span) this.#done(b, err);
    } finally {
      for (const b of mine) await entry.release(b).catch(() => undefined);
    }
    // Blocks another process is fetching: wait for them (or take over a dead holder's claim).
    await Promise.all(theirs.map((b) => this.#await(b)));
  }

  async #await(b: number): Promise<void> {
    const entry = this.entry;
    try {
      for (;;) {
        await sleep(this.#config.pollMs);
        await entry.refresh();
        if (entry.has(b)) {
          this.#done(b);
          return;
        }
        if (await entry.claim(b)) {
          try {
            await entry.refresh();
            if (!entry.has(b)) await this.#fetchRun([b]);
            this.#done(b);
          } finally {
            await entry.release(b);
          }
          return;
        }
      }
    } catch (err) {
      this.#done(b, err);
    }
  }

  /** Streams consecutive blocks from the source, storing each as its last byte arrives. */
  async #fetchRun(run: number[]): Promise<void> {
    const entry = this.entry;
    const bs = entry.blockSize;
    const offset = run[0]! * bs;
    const end = Math.min(entry.size, (run[run.length - 1]! + 1) * bs);
    const stream = await this.#source.readStream(entry.key, {
      range: { offset, length: end - offset },
      ifMatch: this.#etag,
    });
    if (!stream) {
      throw new TierError('CHANGED', `'${entry.key}' disappeared from '${this.#source.name}' during a fill`, {
        key: entry.key,
        tier: this.#source.name,
        retryable: false,
      });
    }
    const buffer = Buffer.allocUnsafe(Math.min(bs, end - offset));
    let i = 0;
    let filled = 0;
    let blockLength = Math.min(bs, end - offset);
    try {
      for await (const chunk of stream as AsyncIterable<Uint8Array>) {
        let at = 0;
        while (at < chunk.byteLength) {
          if (i >= run.length) throw this.#short(end - offset, 'more');
          const n = Math.min(blockLength - filled, chunk.byteLength - at);
          buffer.set(chunk.subarray(at, at + n), filled);
          filled += n;
          at += n;
          if (filled === blockLength) {
            const b = run[i]!;
            await entry.writeBlock(b, buffer.subarray(0, blockLength));
            this.fetchedBytes += blockLength;
            this.#done(b);
            i++;
            filled = 0;
            blockLength = Math.min(bs, end - (offset + i * bs));
          }
        }
      }
    } finally {
      stream.destroy();
    }
    if (i < run.length) throw this.#short(end - offset, 'fewer');
  }

  #short(expected: number, what: 'more' | 'fewer'): TierError {
    return new TierError(
      'INTEGRITY',
      `'${this.entry.key}': '${this.#source.name}' sent ${what} bytes than the ${expected} asked for`,
      { key: this.entry.key, tier: this.#source.name, retryable: true },
    );
  }
}
