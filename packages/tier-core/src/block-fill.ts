/**
 * Block-granular read-through: fills a partial copy in a BlockCache tier from
 * a source tier, fetching each block once — once in this process (one promise
 * per block) and once across processes (the partial's claims) — and only the
 * blocks readers ask for.
 *
 * Blocks asked for together are fetched together: consecutive missing blocks
 * form a span of at most one piece (about 8 MiB of whole blocks), which one
 * worker claims and reads with the source's `readInto` straight into a reused
 * buffer, then stores block by block. A piece is one request to most sources
 * (one ranged GET for S3): few large requests cost a server far less than many
 * small ones. `concurrency` spans run at once, lowest blocks first, so pieces
 * land close to object order and their writes (and digest) overlap the
 * transfer. A span's request slot is freed when its GET ends; its writes and
 * claim releases go on in the background (settle() waits for them), and a new
 * GET waits while the fill's fetched-but-unwritten bytes reach
 * WRITE_BACKLOG_BYTES, so memory stays bounded.
 *
 * Integrity: when the origin states a digest of the object (`config.digests`,
 * from its SourceMeta) — or a caller asks for one (`track`) — the blocks are
 * fed in object order into a digest session on a worker thread as they are
 * stored (digest-feed.ts). The copy is published only once the digest matches;
 * a mismatch fetches every block again, and after `verifyAttempts` fetches the
 * fill fails with INTEGRITY. Pieces landing close to object order let the
 * digest keep up without holding much memory.
 */
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import { checkable, chooseDigest, digestOf, mismatch, specsFor } from './digest-check.js';
import { DigestFeed } from './digest-feed.js';
import type { DigestSpec } from './digest-kit.js';
import { DigestSession, INLINE_DIGEST_BYTES } from './digest-worker.js';
import { TierError, throwIfAborted } from './errors.js';
import { sleep } from './layers/retry.js';
import {
  type DigestAlgorithm,
  isDigestSource,
  type ObjectDigest,
  type PartialEntry,
  type Tier,
} from './tier.js';

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
/** Pieces of one run fetched at once when a run is longer than a span (a refetch of the whole object). */
const PIECES_IN_FLIGHT = 2;
/**
 * Bytes of one fill fetched and not yet written (or digested) before its next
 * GET waits: fetching runs ahead of the writes, by this much at most, on top
 * of the pieces in flight.
 */
const WRITE_BACKLOG_BYTES = 4 * PIECE_BYTES;

export interface BlockFillConfig {
  /** Spans fetched at once for one object. */
  readonly concurrency: number;
  /** Longest span, in bytes (whole blocks; at least one). */
  readonly spanBytes: number;
  /** How often to look for a block another process is fetching (ms). */
  readonly pollMs: number;
  /** What the origin states about the object's bytes (its SourceMeta's `digests`): checked before publishing. */
  readonly digests?: readonly ObjectDigest[];
  /** Fetches of the whole object before a digest mismatch fails with INTEGRITY (default 3). */
  readonly verifyAttempts?: number;
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
  readonly #concurrency: number;
  /** Whole-object digests callers asked for (`track`). */
  readonly #tracked: DigestAlgorithm[] = [];
  /** Set once the digests are planned (before the first fetch): undefined when nothing is digested. */
  #prepared: Promise<void> | undefined;
  #planned = false;
  /** Blocks verification is fetching again and has not stored yet. */
  #refetching: Set<number> | undefined;
  #check: ObjectDigest | undefined;
  #feed: DigestFeed | undefined;
  #verification: Promise<void> | undefined;
  /** Bumped each time verification fetches the object again. */
  #generation = 0;
  /** Verification's own fetches and the digest's read-backs, waited for by `settle`. */
  readonly #background = new Set<Promise<unknown>>();
  /**
   * The object's digests once verified: the one checked against the origin and
   * those asked for with `track`. Undefined before, or when nothing was digested.
   */
  digests: readonly ObjectDigest[] | undefined;
  /** Whether the published bytes were checked against a digest the origin stated. */
  verified = false;
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
  /** Bytes of pieces fetched whose blocks are still being stored. */
  #unwritten = 0;
  /** GETs waiting for the write backlog to shrink. */
  readonly #backlogWaiters: (() => void)[] = [];
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
    // Spans of one piece at most: `concurrency` pieces in flight, lowest first, so the
    // blocks land close to object order and their writes (and digest) run during the transfer.
    this.#spanBlocks = Math.max(
      1,
      Math.min(Math.floor(config.spanBytes / entry.blockSize), Math.floor(PIECE_BYTES / entry.blockSize)),
    );
    this.#concurrency = config.concurrency;
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

  /**
   * Asks for whole-object digests of the bytes (e.g. sha256 to record for
   * `verify`), computed as the blocks arrive. Only before the fill starts
   * fetching: false when it is too late (the caller then hashes the copy itself).
   */
  track(algorithms: readonly DigestAlgorithm[]): boolean {
    if (this.#prepared)
      return algorithms.every((a) => this.#feed?.session.specs.some((s) => s.algorithm === a && !s.partSize));
    for (const a of algorithms) if (!this.#tracked.includes(a)) this.#tracked.push(a);
    return true;
  }

  /**
   * Resolves once every block is present and the digests match what the origin
   * states (fetching the object again on a mismatch); rejects with INTEGRITY
   * when the fetches are spent. Resolves at once when nothing is digested.
   */
  verifiedBytes(): Promise<void> {
    // Tracked: its read-backs and refetches finish before the entry closes (settle).
    this.#verification ??= this.#track(this.#verify());
    return this.#verification;
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
    // The whole object: handed out only once checked.
    if (first === 0 && last === this.entry.blockCount - 1) await this.#race(this.verifiedBytes(), signal);
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
    while (this.#inflight.size > 0 || this.#workers > 0 || this.#background.size > 0) {
      await Promise.allSettled([...this.#inflight.values()].map((p) => p.promise));
      await Promise.allSettled([...this.#background]);
      if (this.#workers > 0) await sleep(1);
    }
    await this.#feed?.idle();
    // A digest never finished (the fill was given up) frees its worker state.
    if (!this.#verification) this.#feed?.drop();
  }

  /** Publishes the object once every block is present (once per fill). */
  publish(): Promise<unknown> {
    this.#published ??= this.verifiedBytes().then(() => this.entry.publish());
    return this.#published;
  }

  /**
   * A stream of `length` bytes at `offset`, each block handed on as soon as it
   * is present. `beforeEnd` runs before the stream ends (the stack publishes there).
   */
  stream(offset: number, length: number, signal?: AbortSignal, beforeEnd?: () => Promise<void>): Readable {
    const [first, last] = this.blocksOf(offset, length);
    const bs = this.entry.blockSize;
    const whole = offset === 0 && length === this.entry.size && length > 0;
    const generation = this.#generation;
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
          .then(async (chunk) => {
            if (b === last && whole) {
              // The last bytes go out only once the whole object checks out; bytes
              // already sent before a refetch were unverified: the stream fails.
              await this.verifiedBytes();
              if (this.#generation !== generation) {
                await beforeEnd?.(); // the verified copy is still published
                throw this.#resent();
              }
            }
            readable.push(chunk);
            if (b === last) {
              await beforeEnd?.();
              readable.push(null);
            }
          })
          .catch((err) => readable.destroy(err));
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
  #dropWanted(err?: unknown): void {
    const dropped = this.#wanted;
    this.#wanted = [];
    for (const b of dropped) {
      this.#done(
        b,
        err ?? new TierError('ABORTED', `fill of '${this.entry.key}' closed`, { key: this.entry.key }),
      );
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

  /** Plans the digests once, before the first fetch. */
  #prepare(): Promise<void> {
    this.#prepared ??= this.#plan();
    return this.#prepared;
  }

  async #plan(): Promise<void> {
    const stated = this.#config.digests ?? [];
    let check = chooseDigest(stated);
    if (!check) {
      // A per-part digest needs its part size: the source may know it (S3: HEAD of part 1).
      const partial = stated.find((d) => d.parts !== undefined && !d.partSize);
      if (partial && isDigestSource(this.#source)) {
        const learned = await this.#source
          .resolveDigest(this.entry.key, partial, {
            size: this.entry.size,
            etag: this.#etag,
            signal: this.#cancel.signal,
          })
          .catch((err: unknown) => {
            if (this.cancelled) throw err;
            return undefined; // not learned: the copy goes unverified
          });
        if (learned && checkable(learned)) check = learned;
      }
    }
    this.#planned = true;
    const specs = specsFor(check, this.#tracked);
    if (specs.length === 0) return;
    this.#check = check;
    this.#feed = this.#newFeed(specs);
  }

  #newFeed(specs: readonly DigestSpec[]): DigestFeed {
    return new DigestFeed(
      new DigestSession(specs, { inline: this.entry.size <= INLINE_DIGEST_BYTES }),
      this.entry,
      (b) => this.#inflight.has(b) || this.#refetching?.has(b) === true,
    );
  }

  async #verify(): Promise<void> {
    await this.#prepare();
    const got: string[] = [];
    const attempts = Math.max(1, this.#config.verifyAttempts ?? 3);
    for (let attempt = 1; this.#feed; attempt++) {
      const feed = this.#feed;
      const specs = feed.session.specs;
      const values = await feed.finish();
      const digests = specs.map((spec, i) => digestOf(spec, values[i]!, this.entry.size));
      const check = this.#check;
      if (!check || digests[0]!.value === check.value) {
        this.digests = check
          ? [{ ...digests[0]!, from: check.from ?? 'checksum' }, ...digests.slice(1)]
          : digests;
        this.verified = check !== undefined;
        return;
      }
      got.push(digests[0]!.value);
      if (attempt >= attempts)
        throw mismatch({ key: this.entry.key, tier: this.#source.name }, check, got, attempt);
      // Fetch every block again (which of them was wrong, a whole-object digest cannot say).
      this.#generation++;
      this.#feed = this.#newFeed(specs);
      const all = Array.from({ length: this.entry.blockCount }, (_, b) => b);
      this.#refetching = new Set(all);
      try {
        await this.#track(this.#fetchRun(all));
      } finally {
        this.#refetching = undefined;
      }
    }
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#background.add(p);
    void p.then(
      () => this.#background.delete(p),
      () => this.#background.delete(p),
    );
    return p;
  }

  #resent(): TierError {
    return new TierError(
      'INTEGRITY',
      `'${this.entry.key}': bytes already streamed did not match the object's digest; the copy was ` +
        'fetched again and is cached verified — read it again',
      { key: this.entry.key, tier: this.#source.name, retryable: false, details: { restartable: true } },
    );
  }

  /** Starts span workers while there is wanted work and room (once the digests are planned). */
  #start(): void {
    if (!this.#planned) {
      this.#prepare().then(
        () => this.#start(),
        (err: unknown) => this.#dropWanted(err),
      );
      return;
    }
    while (this.#workers < this.#concurrency && this.#wanted.length > 0) {
      const span = this.#takeSpan();
      if (span.length === 0) break;
      this.#workers++;
      // A span holds its request slot until its GETs end, not through its writes and
      // claim releases (which settle() waits for): the next span's GET starts meanwhile.
      let freed = false;
      const free = () => {
        if (freed) return;
        freed = true;
        this.#workers--;
        this.#start();
      };
      void this.#track(this.#runSpan(span, free).finally(free));
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

  async #runSpan(span: number[], gotten: () => void): Promise<void> {
    const entry = this.entry;
    const mine: number[] = [];
    const theirs: number[] = [];
    // Stores of fetched pieces still running: awaited before the claims go.
    const writes: Promise<void>[] = [];
    try {
      throwIfAborted(this.#cancel.signal, entry.key);
      await this.#prepare();
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
          writes.push((await this.#fetchRunGets(run)).written);
          run = [];
        }
        run.push(b);
      }
      if (run.length > 0) writes.push((await this.#fetchRunGets(run)).written);
      // Waiting for another process's blocks keeps the slot (a bounded number of pollers).
      if (theirs.length === 0) gotten();
      await allSettledOrThrow(writes);
    } catch (err) {
      await Promise.allSettled(writes);
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
    await (await this.#fetchRunGets(run)).written;
  }

  /**
   * The GETs of `#fetchRun`: resolves once every piece's GET has ended, with a
   * promise of their stores that rejects with the first failure (wrapped, as a
   * returned promise would be waited for). A lane takes its next piece without
   * waiting for the last one's writes, within WRITE_BACKLOG_BYTES. On a failed GET it waits for the stores already
   * started, then throws: nothing of the run touches the entry afterwards.
   */
  async #fetchRunGets(run: number[]): Promise<{ written: Promise<void> }> {
    const per = Math.max(1, Math.floor(PIECE_BYTES / this.entry.blockSize));
    const pieces: number[][] = [];
    for (let i = 0; i < run.length; i += per) pieces.push(run.slice(i, i + per));
    let next = 0;
    let failed: unknown;
    const stores: Promise<void>[] = [];
    const lane = async () => {
      while (failed === undefined && next < pieces.length) {
        const piece = pieces[next++]!;
        try {
          const { stored } = await this.#fetchPiece(piece);
          // A failed store stops this run's next GETs too.
          stores.push(
            stored.catch((err: unknown) => {
              failed ??= err;
              throw err;
            }),
          );
        } catch (err) {
          failed ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PIECES_IN_FLIGHT, pieces.length) }, lane));
    if (failed !== undefined) {
      await Promise.allSettled(stores);
      throw failed;
    }
    const written = allSettledOrThrow(stores);
    written.catch(() => undefined); // awaited by the caller; not unhandled meanwhile
    return { written };
  }

  /** Waits while this fill's fetched-but-unwritten bytes are at the backlog limit. */
  async #backlogRoom(): Promise<void> {
    while (this.#unwritten >= WRITE_BACKLOG_BYTES) {
      await new Promise<void>((resolve) => this.#backlogWaiters.push(resolve));
    }
  }

  #written(bytes: number): void {
    this.#unwritten -= bytes;
    for (const wake of this.#backlogWaiters.splice(0)) wake();
  }

  /**
   * GETs one piece into a reused buffer; resolves when the GET has ended, with
   * a promise of the piece's stores (block by block, in order), after which
   * the buffer is taken again.
   */
  async #fetchPiece(piece: number[]): Promise<{ stored: Promise<void> }> {
    const entry = this.entry;
    const bs = entry.blockSize;
    const offset = piece[0]! * bs;
    const length = Math.min(entry.size, (piece[piece.length - 1]! + 1) * bs) - offset;
    throwIfAborted(this.#cancel.signal, entry.key);
    await this.#backlogRoom();
    throwIfAborted(this.#cancel.signal, entry.key);
    const buffer = this.#takeBuffer(piece.length * bs);
    let handedOff = false;
    try {
      const target = buffer.subarray(0, length);
      const n = await this.#source.readInto(entry.key, target, {
        offset,
        length,
        ifMatch: this.#etag,
        // The digest feed checks the object against what the origin states: the source need not hash it too.
        callerVerifies: this.#check !== undefined,
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
      this.#unwritten += length;
      handedOff = true;
      const stored = (async () => {
        try {
          for (const [i, b] of piece.entries()) {
            await this.#store(b, target.subarray(i * bs, Math.min((i + 1) * bs, length)));
          }
        } finally {
          // The digest feed copied what it keeps (offer): the buffer may be reused.
          this.#buffers.push(buffer);
          this.#written(length);
        }
      })();
      return { stored };
    } finally {
      if (!handedOff) this.#buffers.push(buffer);
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
    this.#refetching?.delete(b);
    const feed = this.#feed;
    feed?.offer(b, bytes);
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
    // The digest thread far behind: the next fetch waits (memory stays bounded).
    await feed?.room();
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

/** Waits for every promise; then throws the first failure, if any. */
async function allSettledOrThrow(promises: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}
