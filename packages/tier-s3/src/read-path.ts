/**
 * The read path: the first ranged GET (which also learns the object's size
 * and ETag), the rest as parallel ranged GETs written at their offsets,
 * resumption of cut bodies, and the end-to-end check of whole-object reads;
 * streams are in read-stream.ts. Both GET paths (see get-object.ts) answer
 * alike, so nothing here knows which one served a request.
 */
import { setMaxListeners } from 'node:events';
import { Readable } from 'node:stream';
import {
  abortError,
  isTierError,
  type ObjectMeta,
  type ReadIntoOptions,
  type ReadOptions,
  resolveIntoRange,
  resolveRange,
  TierError,
} from '@tierkit/tier-core';
import type { ByteBudget } from './budget.js';
import { DirectBody } from './direct-get.js';
import {
  changedError,
  errorName,
  isNotFound,
  statusOf,
  timeoutError,
  toTierError,
  truncatedError,
} from './errors.js';
import type { GetAnswer, ObjectGets } from './get-object.js';
import { checkMd5, etagMd5 } from './integrity.js';
import type { ResolvedS3Config } from './options.js';
import { orderedStream } from './read-stream.js';
import { type AttemptScope, type RequestSlots, type RetryContext, retry } from './request.js';
import type { S3TierTestHooks } from './s3-tier.js';

/** What the read path needs of its tier. */
export interface ReadIo {
  readonly config: ResolvedS3Config;
  readonly name: string;
  readonly budget: ByteBudget;
  /** GET requests in flight across every read into memory of the tier. */
  readonly slots: RequestSlots;
  readonly gets: ObjectGets;
  readonly hooks: S3TierTestHooks;
  check(key: string, signal: AbortSignal | undefined): void;
  head(key: string, signal: AbortSignal | undefined): Promise<ObjectMeta | undefined>;
}

/** Bytes of the first part timed to decide how many ranges to open. */
const PROBE_BYTES = 1024 * 1024;

/** What the first GET of a read told us about the object. */
export interface First {
  readonly res: GetAnswer;
  readonly size: number;
  readonly etag: string | undefined;
  readonly lastModified: number | undefined;
  /** Object offset the body starts at. */
  readonly bodyStart: number;
  readonly startedAt: number;
  /** The first request's attempt: its deadline covers the body; `done()` once the body is read or dropped. */
  readonly scope: AttemptScope;
}

/** A read plan: the object, the resolved range, and where its bytes go. */
export interface Target {
  readonly key: string;
  readonly full: string;
  readonly size: number;
  readonly etag: string | undefined;
  readonly signal: AbortSignal | undefined;
}

/** A first answer that will not be read: its body and its deadline go. */
function dropFirst(first: First): void {
  (first.res.Body as Readable | undefined)?.destroy();
  first.scope.done();
}

function parseContentRange(v: string | undefined): { start: number; end: number; total: number } | undefined {
  const m = v && /^bytes (\d+)-(\d+)\/(\d+)$/.exec(v.trim());
  return m ? { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) } : undefined;
}

export class ReadPath {
  readonly #io: ReadIo;
  readonly config: ResolvedS3Config;
  readonly name: string;
  readonly #budget: ByteBudget;
  readonly #slots: RequestSlots;
  readonly #gets: ObjectGets;

  constructor(io: ReadIo) {
    this.#io = io;
    this.config = io.config;
    this.name = io.name;
    this.#budget = io.budget;
    this.#slots = io.slots;
    this.#gets = io.gets;
  }

  /** GET requests in flight and waiting, across the tier's reads into memory. */
  get slots(): RequestSlots {
    return this.#slots;
  }

  /** One request's slot, then its bytes: what a GET into memory holds while it runs. */
  async #take(key: string, bytes: number, signal: AbortSignal | undefined): Promise<void> {
    await this.#slots.acquire(key, signal);
    try {
      await this.#budget.acquire(bytes, signal);
    } catch (err) {
      this.#slots.release(key);
      throw err;
    }
  }

  #give(key: string, bytes: number): void {
    this.#budget.release(bytes);
    this.#slots.release(key);
  }

  /** The byte budget of the tier (bytes of ranges in flight or buffered). */
  get budget(): ByteBudget {
    return this.#budget;
  }

  get hooks(): S3TierTestHooks {
    return this.#io.hooks;
  }

  async read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return restarting(() => this.#readOnce(key, options));
  }

  async #readOnce(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    const signal = options?.signal;
    this.#io.check(key, signal);
    const range = options?.range;
    if (range) resolveRange(range, Number.MAX_SAFE_INTEGER, key); // type checks before I/O
    const offset = range?.offset ?? 0;
    if (range?.length === 0) return this.#emptyRead(key, range, signal, options?.ifMatch);
    const firstLen = Math.min(this.config.partSize, range?.length ?? this.config.partSize);
    await this.#take(key, firstLen, signal);
    let first: First | undefined | 'empty';
    try {
      first = await this.#first(key, offset, firstLen, signal, options?.ifMatch);
    } catch (err) {
      this.#give(key, firstLen);
      throw err;
    }
    if (first === undefined) {
      this.#give(key, firstLen);
      return undefined;
    }
    if (first === 'empty') {
      this.#give(key, firstLen);
      return this.#emptyRead(key, range, signal, options?.ifMatch);
    }
    let r: { offset: number; length: number };
    try {
      r = resolveRange(range, first.size, key);
    } catch (err) {
      dropFirst(first);
      this.#give(key, firstLen);
      throw err;
    }
    const dest = new Uint8Array(r.length);
    await this.#fill(key, first, firstLen, r, dest, 0, signal, options?.callerVerifies === true);
    return dest;
  }

  async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    return restarting(() => this.#readIntoOnce(key, target, options));
  }

  async #readIntoOnce(
    key: string,
    target: Uint8Array,
    options?: ReadIntoOptions,
  ): Promise<number | undefined> {
    const signal = options?.signal;
    this.#io.check(key, signal);
    if (!(target instanceof Uint8Array)) {
      throw new TierError('INVALID_ARGUMENT', 'readInto needs a Uint8Array target', {
        key,
        retryable: false,
      });
    }
    resolveIntoRange(target, options?.offset, options?.length, Number.MAX_SAFE_INTEGER, key);
    const offset = options?.offset ?? 0;
    const want = options?.length ?? target.byteLength;
    if (want === 0) {
      const meta = await this.#statMatching(key, signal, options?.ifMatch);
      if (!meta) return undefined;
      return resolveIntoRange(target, options?.offset, options?.length, meta.size, key).length;
    }
    const firstLen = Math.min(this.config.partSize, want);
    await this.#take(key, firstLen, signal);
    let first: First | undefined | 'empty';
    try {
      first = await this.#first(key, offset, firstLen, signal, options?.ifMatch);
    } catch (err) {
      this.#give(key, firstLen);
      throw err;
    }
    if (first === undefined || first === 'empty') {
      this.#give(key, firstLen);
      if (first === undefined) return undefined;
      const meta = await this.#statMatching(key, signal, options?.ifMatch);
      if (!meta) return undefined;
      return resolveIntoRange(target, options?.offset, options?.length, meta.size, key).length;
    }
    let r: { offset: number; length: number };
    try {
      r = resolveIntoRange(target, options?.offset, options?.length, first.size, key);
    } catch (err) {
      dropFirst(first);
      this.#give(key, firstLen);
      throw err;
    }
    await this.#fill(key, first, firstLen, r, target, 0, signal, options?.callerVerifies === true);
    return r.length;
  }

  async readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    const outer = options?.signal;
    this.#io.check(key, outer);
    const range = options?.range;
    if (range) resolveRange(range, Number.MAX_SAFE_INTEGER, key);
    const offset = range?.offset ?? 0;
    if (range?.length === 0) {
      const empty = await this.#emptyRead(key, range, outer, options?.ifMatch);
      return empty && Readable.from([]);
    }
    const firstLen = Math.min(this.config.partSize, range?.length ?? this.config.partSize);
    // The stream's own controller, so destroying the stream stops its GETs.
    const ac = new AbortController();
    setMaxListeners(0, ac.signal);
    const onOuterAbort = () => ac.abort(outer?.reason);
    outer?.addEventListener('abort', onOuterAbort, { once: true });
    const signal = ac.signal;
    const cleanup = () => outer?.removeEventListener('abort', onOuterAbort);
    await this.#budget.acquire(firstLen, outer);
    let first: First | undefined | 'empty';
    try {
      first = await this.#first(key, offset, firstLen, signal, options?.ifMatch);
    } catch (err) {
      this.#budget.release(firstLen);
      cleanup();
      throw outer?.aborted ? abortError(outer, key) : err;
    }
    if (first === undefined || first === 'empty') {
      this.#budget.release(firstLen);
      cleanup();
      if (first === undefined) return undefined;
      const empty = await this.#emptyRead(key, range, outer, options?.ifMatch);
      return empty && Readable.from([]);
    }
    let r: { offset: number; length: number };
    try {
      r = resolveRange(range, first.size, key);
    } catch (err) {
      dropFirst(first);
      this.#budget.release(firstLen);
      cleanup();
      throw err;
    }
    return orderedStream(this, key, first, firstLen, r, ac, cleanup);
  }

  async #statMatching(
    key: string,
    signal: AbortSignal | undefined,
    ifMatch: string | undefined,
  ): Promise<ObjectMeta | undefined> {
    const meta = await this.#io.head(key, signal);
    if (meta && ifMatch !== undefined && meta.etag !== undefined && meta.etag !== ifMatch) {
      throw changedError(key, this.name, `ETag ${meta.etag}, expected ${ifMatch}`);
    }
    return meta;
  }

  /** A zero-length read: only the object's existence and size matter. */
  async #emptyRead(
    key: string,
    range: ReadOptions['range'],
    signal: AbortSignal | undefined,
    ifMatch: string | undefined,
  ): Promise<Uint8Array | undefined> {
    const meta = await this.#statMatching(key, signal, ifMatch);
    if (!meta) return undefined;
    const r = resolveRange(range, meta.size, key);
    if (r.length !== 0) {
      throw new TierError('CHANGED', `read '${key}': the object changed during the read`, {
        key,
        tier: this.name,
        retryable: false,
        details: { restartable: true },
      });
    }
    return new Uint8Array(0);
  }

  /**
   * The first GET of a read: one request that both fetches the first part and
   * tells the object's size and ETag (from Content-Range), so a small read is one
   * round trip. `'empty'` means the server refused the range (416): the object is
   * shorter than `offset + 1`, possibly empty; the caller falls back to HEAD.
   */
  async #first(
    key: string,
    offset: number,
    length: number,
    signal: AbortSignal | undefined,
    ifMatch: string | undefined,
  ): Promise<First | undefined | 'empty'> {
    const full = this.config.prefix + key;
    return retry(this.#ctx('read', key), signal, async (_, scope) => {
      const startedAt = performance.now();
      let res: GetAnswer;
      try {
        res = await this.#gets.get(full, `bytes=${offset}-${offset + length - 1}`, ifMatch, scope.signal);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        if (statusOf(err) === 412 || errorName(err) === 'PreconditionFailed') {
          throw changedError(key, this.name, `its ETag is no longer ${ifMatch}`);
        }
        if (statusOf(err) === 416 || errorName(err) === 'InvalidRange') return 'empty' as const;
        throw err;
      }
      // Checked here too: not every S3-compatible server honours If-Match.
      if (ifMatch !== undefined && res.ETag !== undefined && res.ETag !== ifMatch) {
        (res.Body as Readable | undefined)?.destroy();
        throw changedError(key, this.name, `ETag ${res.ETag}, expected ${ifMatch}`);
      }
      const cr = parseContentRange(res.ContentRange);
      // A server that ignores Range answers 200 with the whole object.
      const size = cr ? cr.total : (res.ContentLength ?? 0);
      if (size === 0) {
        // Some servers answer a range of an empty object with a bogus 206
        // ('bytes 0-0/0', one byte promised, none sent): never read that body.
        (res.Body as Readable | undefined)?.destroy();
        return 'empty' as const;
      }
      return {
        res,
        size,
        etag: res.ETag,
        lastModified: res.LastModified?.getTime(),
        bodyStart: cr ? cr.start : 0,
        startedAt,
        // The request's deadline runs on while its body is read.
        scope: scope.hold(),
      };
    });
  }

  /**
   * Fills `dest[destOff…]` with the range `r`: the first response's body, then
   * the rest as parallel ranged GETs, each written at its offset.
   */
  async #fill(
    key: string,
    first: First,
    firstBudget: number,
    r: { offset: number; length: number },
    dest: Uint8Array,
    destOff: number,
    signal: AbortSignal | undefined,
    callerVerifies: boolean,
  ): Promise<void> {
    const t: Target = { key, full: this.config.prefix + key, size: first.size, etag: first.etag, signal };
    const firstLen = Math.min(firstBudget, r.length);
    let firstDone = 0;
    let released = false;
    const releaseFirst = () => {
      if (!released) this.#give(key, firstBudget);
      released = true;
    };
    // Resolved when the probe is measured (or the first part is done).
    let decide!: (concurrency: number) => void;
    const decided = new Promise<number>((res) => {
      decide = res;
    });
    const adaptive = this.config.adaptive;
    if (!adaptive || r.length <= firstLen) decide(this.config.concurrency);
    const onBytes = (n: number) => {
      firstDone += n;
      if (adaptive && (firstDone >= Math.min(PROBE_BYTES, firstLen) || firstDone >= firstLen)) {
        const secs = (performance.now() - first.startedAt) / 1000;
        const rate = firstDone / Math.max(secs, 1e-6);
        decide(rate >= adaptive.fastBytesPerSecond ? adaptive.fastConcurrency : this.config.concurrency);
      }
    };
    // Fail fast: the first error of any part stops the others (the first body included).
    const failure = new AbortController();
    const inner = signal ? AbortSignal.any([signal, failure.signal]) : failure.signal;
    // Every part's request listens on it.
    setMaxListeners(0, inner);
    const ti: Target = { ...t, signal: inner };
    const firstPart = (async () => {
      try {
        try {
          const scoped = first.scope.signal;
          const tf: Target = {
            ...t,
            signal: scoped ? AbortSignal.any([scoped, failure.signal]) : failure.signal,
          };
          await this.pump(tf, first.res, r.offset, firstLen, first.bodyStart, dest, destOff, onBytes);
        } catch (err) {
          if (failure.signal.aborted) throw err;
          this.firstBodyError(first, err, key, signal);
          // Resume the first part where its body stopped, if the first GET left attempts.
          await this.range(ti, r.offset + firstDone, firstLen - firstDone, dest, destOff + firstDone, 1);
        } finally {
          first.scope.done();
        }
      } finally {
        decide(this.config.concurrency);
        releaseFirst();
      }
    })();
    if (r.length <= firstLen) {
      await firstPart.catch((err) => {
        // One GET covered the read, so starting over is a fresh read, not stitching.
        if (isTierError(err, 'CHANGED')) throw restartable(err);
        throw err;
      });
      if (!callerVerifies) await this.#verify(key, first, r, dest.subarray(destOff, destOff + r.length));
      return;
    }
    // The rest, in parts, through a pool of workers sized once the probe is in.
    const ranges: { offset: number; length: number }[] = [];
    const part = this.config.partSize;
    for (let at = r.offset + firstLen; at < r.offset + r.length; at += part) {
      ranges.push({ offset: at, length: Math.min(part, r.offset + r.length - at) });
    }
    const restPart = (async () => {
      const concurrency = await decided;
      // The first stream still runs, so it counts as one of the connections.
      const workers = Math.max(1, Math.min(concurrency - 1, ranges.length));
      let next = 0;
      const worker = async () => {
        while (next < ranges.length) {
          if (inner.aborted) return;
          const p = ranges[next++]!;
          await this.#take(key, p.length, inner);
          try {
            await this.#io.hooks.beforePart?.({ key, offset: p.offset, length: p.length });
            await this.range(ti, p.offset, p.length, dest, destOff + (p.offset - r.offset), 0);
          } finally {
            this.#give(key, p.length);
          }
        }
      };
      await Promise.all(Array.from({ length: workers }, worker));
    })();
    // Fail fast: the first error stops the other parts; report that error.
    let firstError: unknown;
    const settle = (p: Promise<void>) =>
      p.catch((err) => {
        if (firstError === undefined) firstError = err;
        failure.abort();
      });
    await Promise.all([settle(firstPart), settle(restPart)]);
    if (firstError !== undefined) {
      if (signal?.aborted) throw abortError(signal, key);
      throw toTierError(firstError, { op: 'read', key, tier: this.name, signal });
    }
    if (!callerVerifies) await this.#verify(key, first, r, dest.subarray(destOff, destOff + r.length));
  }

  /**
   * A read of the whole object is checked against its MD5 ETag, where it has
   * one (see integrity.ts): INTEGRITY on a mismatch, which `restarting` reads again.
   * Skipped when the caller says it checks the bytes itself (`callerVerifies`:
   * a block fill's digest feed), so they are not hashed twice.
   */
  async #verify(
    key: string,
    first: First,
    r: { offset: number; length: number },
    bytes: Uint8Array,
  ): Promise<void> {
    if (!this.config.verify || r.offset !== 0 || r.length !== first.size) return;
    const md5 = etagMd5(first.res);
    if (md5 === undefined) return;
    this.#io.hooks.beforeMd5Check?.({ key, length: bytes.byteLength });
    await checkMd5(bytes, md5, { key, tier: this.name });
  }

  /**
   * One ranged GET into `dest`, checked against the object seen first (ETag and
   * size), retried on its own with backoff, resuming after the bytes it already has.
   */
  async range(
    t: Target,
    offset: number,
    length: number,
    dest: Uint8Array,
    destOff: number,
    attemptsUsed: number,
  ): Promise<void> {
    let done = 0;
    await retry(
      this.#ctx('read', t.key),
      t.signal,
      async (_, scope) => {
        const from = offset + done;
        const ts: Target = { ...t, signal: scope.signal };
        let res: GetAnswer;
        try {
          res = await this.#gets.get(
            t.full,
            `bytes=${from}-${offset + length - 1}`,
            t.etag || undefined,
            scope.signal,
          );
        } catch (err) {
          if (isNotFound(err)) throw changedError(t.key, this.name, 'it was deleted');
          if (statusOf(err) === 412 || errorName(err) === 'PreconditionFailed') {
            throw changedError(t.key, this.name, 'If-Match failed');
          }
          if (statusOf(err) === 416) throw changedError(t.key, this.name, 'it is shorter now');
          throw err;
        }
        const cr = parseContentRange(res.ContentRange);
        const total = cr ? cr.total : res.ContentLength;
        if (t.etag && res.ETag && res.ETag !== t.etag) {
          (res.Body as Readable | undefined)?.destroy();
          throw changedError(t.key, this.name, `ETag ${t.etag} became ${res.ETag}`);
        }
        if (total !== t.size) {
          (res.Body as Readable | undefined)?.destroy();
          throw changedError(t.key, this.name, `size ${t.size} became ${total}`);
        }
        await this.pump(ts, res, from, length - done, cr ? cr.start : 0, dest, destOff + done, (n) => {
          done += n;
        });
      },
      attemptsUsed,
    );
  }

  /**
   * Copies a response body into `dest` at `destOff`: exactly `length` bytes of
   * the object starting at `from`, the body starting at object offset `bodyStart`.
   * A short body is a retryable error, never data.
   */
  async pump(
    t: Target,
    res: GetAnswer,
    from: number,
    length: number,
    bodyStart: number,
    dest: Uint8Array,
    destOff: number,
    onBytes: (n: number) => void,
  ): Promise<void> {
    const body = res.Body as Readable | DirectBody | undefined;
    if (!body) {
      if (length === 0) return;
      throw truncatedError(t.key, this.name, 0, length);
    }
    const expected = res.ContentLength;
    let skip = from - bodyStart;
    if (skip < 0) {
      body.destroy();
      throw new TierError(
        'IO',
        `read '${t.key}': the server answered from offset ${bodyStart}, not ${from}`,
        {
          key: t.key,
          tier: this.name,
          // A confused server or proxy may answer right next time; the range is asked again.
          retryable: true,
          details: { asked: from, answered: bodyStart },
        },
      );
    }
    let got = 0;
    let seen = 0;
    const onAbort = () => body.destroy();
    t.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (body instanceof DirectBody) {
        // Straight into dest, skipping what precedes `from`; a short body comes back short.
        ({ got, seen } = await body.into(dest, destOff, skip, length, onBytes));
      } else
        for await (const raw of body) {
          let chunk = raw as Uint8Array;
          seen += chunk.byteLength;
          if (skip > 0) {
            const s = Math.min(skip, chunk.byteLength);
            skip -= s;
            chunk = chunk.subarray(s);
          }
          const take = Math.min(chunk.byteLength, length - got);
          if (take > 0) {
            dest.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), destOff + got);
            got += take;
            onBytes(take);
          }
          // The server sent more than we asked for (a Range it ignored): drop the rest.
          if (got === length && expected !== undefined && seen < expected) break;
        }
    } catch (err) {
      if (t.signal?.aborted) throw abortError(t.signal, t.key);
      throw toTierError(err, { op: 'read', key: t.key, tier: this.name });
    } finally {
      t.signal?.removeEventListener('abort', onAbort);
      if (!body.destroyed && (got < length || (expected !== undefined && seen < expected))) body.destroy();
    }
    if (t.signal?.aborted) throw abortError(t.signal, t.key);
    if (expected !== undefined && seen < expected && got < length) {
      throw truncatedError(t.key, this.name, seen, expected);
    }
    if (got < length) throw truncatedError(t.key, this.name, got, length);
  }

  /**
   * The first GET's body failed: throws unless it is worth resuming (retryable,
   * and the retry policy allows a second attempt).
   */
  firstBodyError(first: First, err: unknown, key: string, signal: AbortSignal | undefined): void {
    if (signal?.aborted) throw abortError(signal, key);
    const te = first.scope.expired
      ? timeoutError({ op: 'read', key, tier: this.name }, 'deadline', this.config.requestDeadlineMs, err)
      : toTierError(err, { op: 'read', key, tier: this.name, signal });
    if (!te.retryable || this.config.retry.attempts <= 1) throw te;
  }

  #ctx(op: string, key: string | undefined): RetryContext {
    return { op, key, tier: this.name, config: this.config };
  }
}

/** The last INTEGRITY error of a read: no longer restartable. */
function settled(err: TierError): TierError {
  return new TierError('INTEGRITY', `${err.message} (after 4 reads)`, {
    key: err.key,
    tier: err.tier,
    cause: err,
    retryable: false,
    details: { ...err.details, restartable: false },
  });
}

/** A CHANGED error that a whole read may start over on: it lost no returned bytes. */
function restartable(err: TierError): TierError {
  return new TierError('CHANGED', err.message, {
    key: err.key,
    tier: err.tier,
    cause: err,
    retryable: false,
    details: { ...err.details, restartable: true },
  });
}

/**
 * Runs a read again (a few times) when the object changed under a read that had
 * returned nothing yet; a multi-part read that changed surfaces CHANGED.
 */
async function restarting<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      // The object changed before any byte was returned, or the bytes failed their check: read again.
      const again = isTierError(err, 'CHANGED') || isTierError(err, 'INTEGRITY');
      if (attempt >= 4 || !again || err.details?.restartable !== true) {
        throw isTierError(err, 'INTEGRITY') ? settled(err) : err;
      }
    }
  }
}
