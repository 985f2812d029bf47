/**
 * Block-granular read-through: fills a partial copy in a BlockCache tier from
 * a source tier, fetching each block once — once in this process (one promise
 * per block) and once across processes (the partial's claims) — and only the
 * blocks readers ask for.
 *
 * Blocks asked for together are fetched together: consecutive missing blocks
 * form a span, which one worker claims and fetches in pieces of about 8 MiB
 * of whole blocks, two at a time, each read with the source's `readInto`
 * straight into a reused buffer and stored block by block. A piece is one
 * request to most sources (one ranged GET for S3): few large requests cost a
 * server far less than many small ones, and `concurrency` spans × 2 pieces
 * keep enough requests in flight for a store where one connection is slow.
 */
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import { TierError, throwIfAborted } from './errors.js';
import { sleep } from './layers/retry.js';
import type { PartialEntry, Tier } from './tier.js';

/**
 * A block fetched while a stream waits for it is handed over as a copy from
 * memory rather than read back from the cache tier (where it may have gone
 * past the page cache, so a read-back means a disk read and new page-cache
 * pages), up to this many bytes not yet taken: a slow reader does not make
 * the fill hold the object in memory.
 */
const HANDOFF_BYTES = 64 * 1024 * 1024;

/** Bytes read from the source per request (whole blocks, at least one): an S3 part's worth. */
const PIECE_BYTES = 8 * 1024 * 1024;
/** Pieces of one span fetched at once: the next lands while the last is written. */
const PIECES_IN_FLIGHT = 2;

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
  /** Callers' buffers waiting for a range (`readInto`): blocks stored meanwhile are copied straight in. */
  readonly #sinks = new Set<{ target: Uint8Array; offset: number; copied: Set<number> }>();
  /** Blocks a stream of this fill will read: how many streams wait for each. */
  readonly #streamed = new Map<number, number>();
  /** Copies of blocks just stored, for the stream that waits for them (see HANDOFF_BYTES). */
  readonly #handoff = new Map<number, Uint8Array>();
  #handoffBytes = 0;
  /** Piece buffers not in use, kept for the next pieces (their pages are already touched). */
  readonly #buffers: Uint8Array[] = [];
  /**
   * The fill's own signal, never a reader's: its source reads run under it, and
   * it fires (`cancel`) only when no reader wants the fill any more.
   */
  readonly #cancel = new AbortController();

  constructor(entry: PartialEntry, source: Tier, etag: string | undefined, config: BlockFillConfig) {
    this.entry = entry;
    this.#source = source;
    this.#etag = etag;
    this.#config = config;
    this.#spanBlocks = Math.max(1, Math.floor(config.spanBytes / entry.blockSize));
    // Every piece in flight listens on it.
    setMaxListeners(0, this.#cancel.signal);
  }

  /** Whether the fill was cancelled. */
  get cancelled(): boolean {
    return this.#cancel.signal.aborted;
  }

  /**
   * Stops the fill: blocks not started are dropped, source reads in flight are
   * aborted. For when no reader wants it any more; `settle()` then returns soon.
   */
  cancel(): void {
    if (this.cancelled) return;
    this.#cancel.abort(
      new TierError('ABORTED', `fill of '${this.entry.key}' cancelled: no reader wants it`, {
        key: this.entry.key,
        retryable: false,
      }),
    );
    this.#dropWanted();
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

  /**
   * Fills `target` with the object's bytes from `offset`, fetching what is
   * missing. Blocks this process fetches meanwhile are copied into `target`
   * as they are stored; only the others are read back from the entry.
   */
  async readInto(target: Uint8Array, offset: number, signal?: AbortSignal): Promise<void> {
    const [first, last] = this.blocksOf(offset, target.byteLength);
    const sink = { target, offset, copied: new Set<number>() };
    this.#sinks.add(sink);
    try {
      await this.ensure(first, last, signal);
    } finally {
      this.#sinks.delete(sink);
    }
    const bs = this.entry.blockSize;
    const end = offset + target.byteLength;
    // Runs of blocks not handed over, one read each.
    for (let b = first; b <= last; ) {
      if (sink.copied.has(b)) {
        b++;
        continue;
      }
      let e = b;
      while (e + 1 <= last && !sink.copied.has(e + 1)) e++;
      const from = Math.max(offset, b * bs);
      const to = Math.min(end, (e + 1) * bs);
      await this.entry.readInto(target.subarray(from - offset, to - offset), from);
      b = e + 1;
    }
  }

  /** Waits until no block of this fill is being fetched (before the entry is closed). */
  async settle(): Promise<void> {
    this.#dropWanted();
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
    for (let b = first; b <= last; b++) this.#streamed.set(b, (this.#streamed.get(b) ?? 0) + 1);
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
          .then(
            async () => {
              const start = Math.max(offset, b * bs);
              const end = Math.min(offset + length, (b + 1) * bs);
              const kept = this.#handoff.get(b);
              this.#unwatch(b);
              if (kept) return kept.subarray(start - b * bs, end - b * bs);
              const out = Buffer.allocUnsafe(end - start);
              await this.entry.readInto(out, start);
              return out;
            },
            (err) => {
              // This stream will not take block b: its copy must not wait for it.
              this.#unwatch(b);
              throw err;
            },
          )
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
    // A stream closed early no longer waits for the blocks it did not take.
    readable.once('close', () => {
      for (let b = next; b <= last; b++) this.#unwatch(b);
    });
    if (first > last) {
      void (beforeEnd?.() ?? Promise.resolve()).finally(() => readable.push(null));
    }
    return readable;
  }

  // — internals —

  /** Blocks nobody took yet will not be fetched now: their waiters (if any) are told so. */
  #dropWanted(): void {
    const dropped = this.#wanted;
    this.#wanted = [];
    for (const b of dropped) {
      this.#done(b, new TierError('ABORTED', `fill of '${this.entry.key}' closed`, { key: this.entry.key }));
    }
  }

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
    if (!p && this.cancelled) return Promise.reject(this.#cancel.signal.reason);
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
      throwIfAborted(this.#cancel.signal, entry.key);
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
        await sleep(this.#config.pollMs, this.#cancel.signal);
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

  /**
   * Fetches a run of consecutive claimed blocks in pieces of whole blocks
   * (about PIECE_BYTES each, PIECES_IN_FLIGHT at a time), each read with the
   * source's `readInto` straight into a reused buffer, its blocks stored as
   * soon as it lands. The bytes are copied once, from the source into the
   * memory the cache writes from: no stream to reassemble, no fresh memory
   * per piece (first-touching new pages is what fills spent most time on).
   */
  async #fetchRun(run: number[]): Promise<void> {
    const per = Math.max(1, Math.floor(PIECE_BYTES / this.entry.blockSize));
    const pieces: number[][] = [];
    for (let i = 0; i < run.length; i += per) pieces.push(run.slice(i, i + per));
    let next = 0;
    let failed: unknown;
    const lane = async () => {
      while (failed === undefined && next < pieces.length) {
        const piece = pieces[next++]!;
        try {
          await this.#fetchPiece(piece);
        } catch (err) {
          failed ??= err;
        }
      }
    };
    // Every lane has finished when this settles: nothing touches the entry after settle().
    await Promise.all(Array.from({ length: Math.min(PIECES_IN_FLIGHT, pieces.length) }, lane));
    if (failed !== undefined) throw failed;
  }

  async #fetchPiece(piece: number[]): Promise<void> {
    const entry = this.entry;
    const bs = entry.blockSize;
    const offset = piece[0]! * bs;
    const length = Math.min(entry.size, (piece[piece.length - 1]! + 1) * bs) - offset;
    throwIfAborted(this.#cancel.signal, entry.key);
    const buffer = this.#takeBuffer(piece.length * bs);
    try {
      const target = buffer.subarray(0, length);
      const n = await this.#source.readInto(entry.key, target, {
        offset,
        length,
        ifMatch: this.#etag,
        signal: this.#cancel.signal,
      });
      if (n === undefined) {
        throw new TierError(
          'CHANGED',
          `'${entry.key}' disappeared from '${this.#source.name}' during a fill`,
          {
            key: entry.key,
            tier: this.#source.name,
            retryable: false,
          },
        );
      }
      if (n !== length) throw this.#short(length);
      for (const [i, b] of piece.entries()) {
        await this.#store(b, target.subarray(i * bs, Math.min((i + 1) * bs, length)));
      }
    } finally {
      this.#buffers.push(buffer);
    }
  }

  /** A buffer of at least `size` bytes from those this fill used before (the entry's kind of memory). */
  #takeBuffer(size: number): Uint8Array {
    const i = this.#buffers.findIndex((b) => b.byteLength >= size);
    if (i >= 0) return this.#buffers.splice(i, 1)[0]!;
    return this.entry.blockBuffer?.(size) ?? Buffer.allocUnsafe(size);
  }

  async #store(b: number, bytes: Uint8Array): Promise<void> {
    await this.entry.writeBlock(b, bytes);
    this.fetchedBytes += bytes.byteLength;
    const start = b * this.entry.blockSize;
    for (const sink of this.#sinks) {
      const from = Math.max(sink.offset, start);
      const to = Math.min(sink.offset + sink.target.byteLength, start + bytes.byteLength);
      if (from >= to) continue;
      sink.target.set(bytes.subarray(from - start, to - start), from - sink.offset);
      sink.copied.add(b);
    }
    if (
      this.#streamed.has(b) &&
      !this.#handoff.has(b) &&
      this.#handoffBytes + bytes.byteLength <= HANDOFF_BYTES
    ) {
      this.#handoff.set(b, Buffer.from(bytes));
      this.#handoffBytes += bytes.byteLength;
    }
    this.#done(b);
  }

  /** Block `b` is no longer waited for by one stream; its copy goes when nobody waits. */
  #unwatch(b: number): void {
    const n = this.#streamed.get(b);
    if (n === undefined) return;
    if (n > 1) {
      this.#streamed.set(b, n - 1);
      return;
    }
    this.#streamed.delete(b);
    const kept = this.#handoff.get(b);
    if (kept) {
      this.#handoff.delete(b);
      this.#handoffBytes -= kept.byteLength;
    }
  }

  #short(expected: number): TierError {
    return new TierError(
      'INTEGRITY',
      `'${this.entry.key}': '${this.#source.name}' sent fewer bytes than the ${expected} asked for`,
      { key: this.entry.key, tier: this.#source.name, retryable: true },
    );
  }
}
