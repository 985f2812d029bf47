/**
 * Any S3-compatible object store as a tierkit tier.
 */

import { setMaxListeners } from 'node:events';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import {
  abortError,
  assertKey,
  assertPrefix,
  checkSize,
  concat,
  isTierError,
  keyProblem,
  type ListOptions,
  type ObjectMeta,
  type OpOptions,
  type ReadIntoOptions,
  type ReadOptions,
  resolveIntoRange,
  resolveRange,
  TIER_SPEC,
  type Tier,
  type TierCapability,
  TierError,
  throwIfAborted,
  type WriteData,
  type WriteOptions,
} from '@tierkit/tier-core';
import { ByteBudget } from './budget.js';
import {
  DirectBody,
  DirectGets,
  type DirectResponse,
  DirectUnsupported,
  type SignableRequest as RequestSigned,
  type RequestSigner,
} from './direct-get.js';
import { changedError, errorName, isNotFound, statusOf, toTierError, truncatedError } from './errors.js';
import { optionsFromUrl, type ResolvedS3Config, resolveOptions, type S3TierOptions } from './options.js';

const CAPABILITY: TierCapability = Object.freeze({
  write: true,
  delete: true,
  list: true,
  rangeRead: true,
  readInto: true,
  etag: true,
  sourceMeta: false,
  deviceMemory: false,
  persistent: true,
});

const MAX_PARTS = 10_000;
/** Bytes of the first part timed to decide how many ranges to open. */
const PROBE_BYTES = 1024 * 1024;

/** A GetObject answer: the SDK's, or a direct GET's (see direct-get.ts). */
type GetAnswer = GetObjectCommandOutput | DirectResponse;

/** Hooks for tests: called before each ranged GET after the first of a multi-part read. */
export interface S3TierTestHooks {
  beforePart?: (info: { key: string; offset: number; length: number }) => Promise<void> | void;
}

/** What the first GET of a read told us about the object. */
interface First {
  readonly res: GetAnswer;
  readonly size: number;
  readonly etag: string | undefined;
  readonly lastModified: number | undefined;
  /** Object offset the body starts at. */
  readonly bodyStart: number;
  readonly startedAt: number;
}

/** A read plan: the object, the resolved range, and where its bytes go. */
interface Target {
  readonly key: string;
  readonly full: string;
  readonly size: number;
  readonly etag: string | undefined;
  readonly signal: AbortSignal | undefined;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function parseContentRange(v: string | undefined): { start: number; end: number; total: number } | undefined {
  const m = v && /^bytes (\d+)-(\d+)\/(\d+)$/.exec(v.trim());
  return m ? { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) } : undefined;
}

export class S3Tier implements Tier {
  readonly spec = TIER_SPEC;
  readonly capability = CAPABILITY;
  readonly name: string;
  /** The resolved, serializable configuration (no client, no secrets). */
  readonly config: ResolvedS3Config;
  readonly client: S3Client;
  /** For tests only. */
  testHooks: S3TierTestHooks = {};
  readonly #ownsClient: boolean;
  readonly #budget: ByteBudget;
  /** Ranged GETs over our own sockets (`directGets`), where the endpoint allows. */
  #direct: DirectGets | undefined;
  #closed = false;

  constructor(options: S3TierOptions) {
    this.config = resolveOptions(options);
    this.name = this.config.name;
    this.#budget = new ByteBudget(this.config.maxBytesInFlight);
    if (options.client) {
      this.client = options.client;
      this.#ownsClient = false;
    } else {
      this.client = new S3Client(clientConfig(this.config, options));
      this.#ownsClient = true;
    }
    const c = this.config;
    if (c.directGets && this.#ownsClient && c.forcePathStyle && c.endpoint?.startsWith('http:')) {
      const cfg = this.client.config;
      this.#direct = new DirectGets({
        endpoint: c.endpoint,
        bucket: c.bucket,
        signer: sigV4({
          service: 's3',
          region: cfg.region,
          credentials: cfg.credentials,
          sha256: cfg.sha256,
          uriEscapePath: false,
          applyChecksum: false,
        }),
        maxSockets: c.maxSockets,
        requestTimeoutMs: c.requestTimeoutMs,
        connectionTimeoutMs: c.connectionTimeoutMs,
      });
    }
  }

  /** Whether ranged GETs currently go over direct sockets (see `directGets`). */
  get directGets(): boolean {
    return this.#direct !== undefined;
  }

  /** One ranged GetObject: direct where possible, else (and from the first answer it cannot take) the SDK. */
  async #getObject(
    key: string,
    range: string,
    ifMatch: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<GetAnswer> {
    const d = this.#direct;
    if (d) {
      try {
        return await d.get(key, range, ifMatch, signal);
      } catch (err) {
        if (!(err instanceof DirectUnsupported)) throw err;
        this.#direct = undefined;
        d.close();
      }
    }
    return this.client.send(
      new GetObjectCommand({
        Bucket: this.config.bucket,
        Key: key,
        Range: range,
        ...(ifMatch !== undefined ? { IfMatch: ifMatch } : {}),
      }),
      { abortSignal: signal },
    );
  }

  // ---------------------------------------------------------------- stat

  async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    this.#check(key, options?.signal);
    return this.#head(key, options?.signal);
  }

  async #head(key: string, signal: AbortSignal | undefined): Promise<ObjectMeta | undefined> {
    const full = this.config.prefix + key;
    return this.#retry('stat', key, signal, async () => {
      try {
        const r = await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: full }), {
          abortSignal: signal,
        });
        return {
          key,
          size: r.ContentLength ?? 0,
          ...(r.ETag ? { etag: r.ETag } : {}),
          ...(r.LastModified ? { lastModified: r.LastModified.getTime() } : {}),
        };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  // ---------------------------------------------------------------- reads

  async read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return restarting(() => this.#readOnce(key, options));
  }

  async #readOnce(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    const signal = options?.signal;
    this.#check(key, signal);
    const range = options?.range;
    if (range) resolveRange(range, Number.MAX_SAFE_INTEGER, key); // type checks before I/O
    const offset = range?.offset ?? 0;
    if (range?.length === 0) return this.#emptyRead(key, range, signal, options?.ifMatch);
    const firstLen = Math.min(this.config.partSize, range?.length ?? this.config.partSize);
    await this.#budget.acquire(firstLen, signal);
    let first: First | undefined | 'empty';
    try {
      first = await this.#first(key, offset, firstLen, signal, options?.ifMatch);
    } catch (err) {
      this.#budget.release(firstLen);
      throw err;
    }
    if (first === undefined) {
      this.#budget.release(firstLen);
      return undefined;
    }
    if (first === 'empty') {
      this.#budget.release(firstLen);
      return this.#emptyRead(key, range, signal, options?.ifMatch);
    }
    let r: { offset: number; length: number };
    try {
      r = resolveRange(range, first.size, key);
    } catch (err) {
      first.res.Body && (first.res.Body as Readable).destroy();
      this.#budget.release(firstLen);
      throw err;
    }
    const dest = new Uint8Array(r.length);
    await this.#fill(key, first, firstLen, r, dest, 0, signal);
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
    this.#check(key, signal);
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
    await this.#budget.acquire(firstLen, signal);
    let first: First | undefined | 'empty';
    try {
      first = await this.#first(key, offset, firstLen, signal, options?.ifMatch);
    } catch (err) {
      this.#budget.release(firstLen);
      throw err;
    }
    if (first === undefined || first === 'empty') {
      this.#budget.release(firstLen);
      if (first === undefined) return undefined;
      const meta = await this.#statMatching(key, signal, options?.ifMatch);
      if (!meta) return undefined;
      return resolveIntoRange(target, options?.offset, options?.length, meta.size, key).length;
    }
    let r: { offset: number; length: number };
    try {
      r = resolveIntoRange(target, options?.offset, options?.length, first.size, key);
    } catch (err) {
      (first.res.Body as Readable | undefined)?.destroy();
      this.#budget.release(firstLen);
      throw err;
    }
    await this.#fill(key, first, firstLen, r, target, 0, signal);
    return r.length;
  }

  async readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    const outer = options?.signal;
    this.#check(key, outer);
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
      (first.res.Body as Readable | undefined)?.destroy();
      this.#budget.release(firstLen);
      cleanup();
      throw err;
    }
    return this.#orderedStream(key, first, firstLen, r, ac, cleanup);
  }

  async #statMatching(
    key: string,
    signal: AbortSignal | undefined,
    ifMatch: string | undefined,
  ): Promise<ObjectMeta | undefined> {
    const meta = await this.#head(key, signal);
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
    return this.#retry('read', key, signal, async () => {
      const startedAt = performance.now();
      let res: GetAnswer;
      try {
        res = await this.#getObject(full, `bytes=${offset}-${offset + length - 1}`, ifMatch, signal);
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
  ): Promise<void> {
    const t: Target = { key, full: this.config.prefix + key, size: first.size, etag: first.etag, signal };
    const firstLen = Math.min(firstBudget, r.length);
    let firstDone = 0;
    let released = false;
    const releaseFirst = () => {
      if (!released) this.#budget.release(firstBudget);
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
    const firstPart = (async () => {
      try {
        try {
          await this.#pump(t, first.res, r.offset, firstLen, first.bodyStart, dest, destOff, onBytes);
        } catch (err) {
          const te = toTierError(err, { op: 'read', key, tier: this.name, signal });
          if (!te.retryable) throw te;
          // Resume the first part where its body stopped.
          await this.#range(t, r.offset + firstDone, firstLen - firstDone, dest, destOff + firstDone, 1);
        }
      } finally {
        decide(this.config.concurrency);
        releaseFirst();
      }
    })();
    if (r.length <= firstLen) {
      return firstPart.catch((err) => {
        // One GET covered the read, so starting over is a fresh read, not stitching.
        if (isTierError(err, 'CHANGED')) throw restartable(err);
        throw err;
      });
    }
    // The rest, in parts, through a pool of workers sized once the probe is in.
    const ranges: { offset: number; length: number }[] = [];
    const part = this.config.partSize;
    for (let at = r.offset + firstLen; at < r.offset + r.length; at += part) {
      ranges.push({ offset: at, length: Math.min(part, r.offset + r.length - at) });
    }
    const failure = new AbortController();
    const inner = signal ? AbortSignal.any([signal, failure.signal]) : failure.signal;
    // Every part's request listens on it.
    setMaxListeners(0, inner);
    const ti: Target = { ...t, signal: inner };
    const restPart = (async () => {
      const concurrency = await decided;
      // The first stream still runs, so it counts as one of the connections.
      const workers = Math.max(1, Math.min(concurrency - 1, ranges.length));
      let next = 0;
      const worker = async () => {
        while (next < ranges.length) {
          if (inner.aborted) return;
          const p = ranges[next++]!;
          await this.#budget.acquire(p.length, inner);
          try {
            await this.testHooks.beforePart?.({ key, offset: p.offset, length: p.length });
            await this.#range(ti, p.offset, p.length, dest, destOff + (p.offset - r.offset), 0);
          } finally {
            this.#budget.release(p.length);
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
  }

  /**
   * One ranged GET into `dest`, checked against the object seen first (ETag and
   * size), retried on its own with backoff, resuming after the bytes it already has.
   */
  async #range(
    t: Target,
    offset: number,
    length: number,
    dest: Uint8Array,
    destOff: number,
    attemptsUsed: number,
  ): Promise<void> {
    let done = 0;
    await this.#retry(
      'read',
      t.key,
      t.signal,
      async () => {
        const from = offset + done;
        let res: GetAnswer;
        try {
          res = await this.#getObject(
            t.full,
            `bytes=${from}-${offset + length - 1}`,
            t.etag || undefined,
            t.signal,
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
        await this.#pump(t, res, from, length - done, cr ? cr.start : 0, dest, destOff + done, (n) => {
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
  async #pump(
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
          retryable: false,
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

  /** An ordered stream of `r` from parallel parts, with bounded read-ahead. */
  #orderedStream(
    key: string,
    first: First,
    firstBudget: number,
    r: { offset: number; length: number },
    ac: AbortController,
    cleanup: () => void,
  ): Readable {
    const signal = ac.signal;
    const t: Target = { key, full: this.config.prefix + key, size: first.size, etag: first.etag, signal };
    const firstLen = Math.min(firstBudget, r.length);
    const firstBuf = new Uint8Array(firstLen);
    let window = this.config.concurrency;
    const firstPromise = (async () => {
      let done = 0;
      try {
        await this.#pump(t, first.res, r.offset, firstLen, first.bodyStart, firstBuf, 0, (n) => {
          done += n;
        });
      } catch (err) {
        const te = toTierError(err, { op: 'read', key, tier: this.name, signal });
        if (!te.retryable) throw te;
        await this.#range(t, r.offset + done, firstLen - done, firstBuf, done, 1);
      }
      const adaptive = this.config.adaptive;
      if (adaptive) {
        const rate = firstLen / Math.max((performance.now() - first.startedAt) / 1000, 1e-6);
        if (rate >= adaptive.fastBytesPerSecond) window = adaptive.fastConcurrency;
      }
      return firstBuf;
    })();
    type Pending = { length: number; promise: Promise<Uint8Array> };
    const queue: Pending[] = [{ length: firstBudget, promise: firstPromise }];
    // Avoid unhandled rejections for parts that fail while not yet awaited.
    firstPromise.catch(() => {});
    let nextOffset = r.offset + firstLen;
    const end = r.offset + r.length;
    let firstSettled = false;
    const schedule = () => {
      // Read-ahead opens up only once the first part has told the speed.
      const limit = firstSettled ? window : 1;
      while (queue.length < limit && nextOffset < end && !signal.aborted) {
        const offset = nextOffset;
        const length = Math.min(this.config.partSize, end - offset);
        nextOffset += length;
        const promise = (async () => {
          await this.#budget.acquire(length, signal);
          try {
            await this.testHooks.beforePart?.({ key, offset, length });
            const buf = new Uint8Array(length);
            await this.#range(t, offset, length, buf, 0, 0);
            return buf;
          } catch (err) {
            this.#budget.release(length);
            throw err;
          }
        })();
        promise.catch(() => {});
        queue.push({ length, promise });
      }
    };
    const tier = this;
    let finished = false;
    return new Readable({
      highWaterMark: 1,
      async read() {
        const head = queue.shift();
        if (!head) {
          finished = true;
          cleanup();
          this.push(null);
          return;
        }
        try {
          const buf = await head.promise;
          tier.#budget.release(head.length);
          firstSettled = true;
          schedule();
          this.push(buf);
        } catch (err) {
          this.destroy(
            signal.aborted && !(isTierError(err) && err.code !== 'ABORTED')
              ? abortError(signal, key)
              : toTierError(err, { op: 'read', key, tier: tier.name }),
          );
        }
      },
      destroy(err, callback) {
        if (!finished) ac.abort();
        cleanup();
        // Parts still pending give their budget back as they settle.
        for (const p of queue.splice(0)) {
          p.promise.then(
            () => tier.#budget.release(p.length),
            () => {},
          );
        }
        callback(err);
      },
    });
  }

  // ---------------------------------------------------------------- writes

  async write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    const signal = options?.signal;
    this.#check(key, signal);
    const expected = options?.size;
    if (expected !== undefined && (!Number.isSafeInteger(expected) || expected < 0)) {
      throw new TierError('INVALID_ARGUMENT', `write size must be an integer ≥ 0, got ${expected}`, {
        key,
        retryable: false,
      });
    }
    if (data instanceof Uint8Array) {
      checkSize(data.byteLength, expected, key);
      if (data.byteLength <= this.config.multipartThreshold) return this.#put(key, data, signal);
      return this.#multipart(key, chunksOf(data), data.byteLength, signal);
    }
    if (!data || typeof (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] !== 'function') {
      throw new TierError(
        'INVALID_ARGUMENT',
        'write data must be a Uint8Array or an AsyncIterable<Uint8Array>',
        {
          key,
          retryable: false,
        },
      );
    }
    // Gather up to the threshold: a small stream is one PutObject with a known length.
    const it = (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let total = 0;
    let ended = false;
    while (total <= this.config.multipartThreshold) {
      throwIfAborted(signal, key);
      const n = await it.next();
      if (n.done) {
        ended = true;
        break;
      }
      const chunk = checkChunk(n.value, key);
      // Copy: the producer may reuse its chunk once we ask for the next one.
      head.push(chunk.slice());
      total += chunk.byteLength;
      if (expected !== undefined && total > expected) {
        await it.return?.();
        checkSize(total, expected, key);
      }
    }
    if (ended) {
      checkSize(total, expected, key);
      return this.#put(key, concat(head, total), signal);
    }
    async function* rest(): AsyncGenerator<Uint8Array> {
      yield* head;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield checkChunk(n.value, key);
      }
    }
    return this.#multipart(key, rest(), expected, signal);
  }

  async #put(key: string, body: Uint8Array, signal: AbortSignal | undefined): Promise<ObjectMeta> {
    const r = await this.#retry('write', key, signal, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.config.bucket,
          Key: this.config.prefix + key,
          Body: body,
          ContentLength: body.byteLength,
        }),
        { abortSignal: signal },
      ),
    );
    return { key, size: body.byteLength, ...(r.ETag ? { etag: r.ETag } : {}) };
  }

  /**
   * A multipart upload with bounded memory: parts are cut from the stream into
   * fresh buffers and at most `uploadConcurrency` are in flight. Any failure (a
   * size mismatch included) aborts the upload, so nothing is published.
   */
  async #multipart(
    key: string,
    source: AsyncIterable<Uint8Array>,
    expected: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<ObjectMeta> {
    const full = this.config.prefix + key;
    const Bucket = this.config.bucket;
    const partSize =
      expected === undefined
        ? this.config.uploadPartSize
        : Math.max(this.config.uploadPartSize, Math.ceil(expected / MAX_PARTS));
    const created = await this.#retry('write', key, signal, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket, Key: full }), { abortSignal: signal }),
    );
    const UploadId = created.UploadId;
    if (!UploadId) throw new TierError('IO', `write '${key}': the server returned no UploadId`, { key });
    const failure = new AbortController();
    const inner = signal ? AbortSignal.any([signal, failure.signal]) : failure.signal;
    setMaxListeners(0, inner);
    const parts: { PartNumber: number; ETag: string | undefined }[] = [];
    const inFlight = new Set<Promise<void>>();
    let uploadError: unknown;
    let total = 0;
    try {
      let partNumber = 0;
      const upload = (body: Uint8Array) => {
        const PartNumber = ++partNumber;
        if (PartNumber > MAX_PARTS) {
          throw new TierError(
            'CAPACITY',
            `write '${key}': more than ${MAX_PARTS} parts; raise uploadPartSize`,
            {
              key,
              retryable: false,
            },
          );
        }
        const p = this.#retry('write', key, inner, () =>
          this.client.send(
            new UploadPartCommand({
              Bucket,
              Key: full,
              UploadId,
              PartNumber,
              Body: body,
              ContentLength: body.byteLength,
            }),
            { abortSignal: inner },
          ),
        ).then(
          (r) => {
            parts.push({ PartNumber, ETag: r.ETag });
          },
          (err) => {
            uploadError ??= err;
            failure.abort();
          },
        );
        const tracked = p.finally(() => inFlight.delete(tracked));
        inFlight.add(tracked);
      };
      let buf = new Uint8Array(partSize);
      let fill = 0;
      for await (const chunk of source) {
        if (uploadError !== undefined) break;
        throwIfAborted(signal, key);
        total += chunk.byteLength;
        if (expected !== undefined && total > expected) checkSize(total, expected, key);
        let at = 0;
        while (at < chunk.byteLength) {
          const n = Math.min(partSize - fill, chunk.byteLength - at);
          buf.set(chunk.subarray(at, at + n), fill);
          fill += n;
          at += n;
          if (fill === partSize) {
            // Bounded memory: wait for a slot before cutting another part.
            while (inFlight.size >= this.config.uploadConcurrency) await Promise.race(inFlight);
            if (uploadError !== undefined) break;
            upload(buf);
            buf = new Uint8Array(partSize);
            fill = 0;
          }
        }
      }
      if (uploadError === undefined) {
        checkSize(total, expected, key);
        if (fill > 0 || partNumber === 0) upload(buf.subarray(0, fill));
      }
      await Promise.all(inFlight);
      if (uploadError !== undefined) throw uploadError;
      throwIfAborted(signal, key);
      parts.sort((a, b) => a.PartNumber - b.PartNumber);
      const done = await this.#retry('write', key, signal, async (attempt) => {
        try {
          return await this.client.send(
            new CompleteMultipartUploadCommand({
              Bucket,
              Key: full,
              UploadId,
              MultipartUpload: { Parts: parts },
            }),
            { abortSignal: signal },
          );
        } catch (err) {
          // A retried Complete whose first try succeeded finds no upload: the object is there.
          if (attempt > 1 && errorName(err) === 'NoSuchUpload') {
            const meta = await this.#head(key, signal);
            if (meta && meta.size === total) return { ETag: meta.etag };
          }
          throw err;
        }
      });
      return { key, size: total, ...(done.ETag ? { etag: done.ETag } : {}) };
    } catch (err) {
      failure.abort();
      await Promise.allSettled(inFlight);
      await this.#retry('write', key, undefined, () =>
        this.client.send(new AbortMultipartUploadCommand({ Bucket, Key: full, UploadId })),
      ).catch(() => {
        // Best effort: a lifecycle rule cleans up what an unreachable server kept.
      });
      if (signal?.aborted) throw abortError(signal, key);
      throw toTierError(err, { op: 'write', key, tier: this.name });
    }
  }

  // ---------------------------------------------------------------- delete / list

  async delete(key: string, options?: OpOptions): Promise<void> {
    const signal = options?.signal;
    this.#check(key, signal);
    await this.#retry('delete', key, signal, async () => {
      try {
        await this.client.send(
          new DeleteObjectCommand({ Bucket: this.config.bucket, Key: this.config.prefix + key }),
          {
            abortSignal: signal,
          },
        );
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
    });
  }

  async *list(prefix = '', options?: ListOptions): AsyncIterable<ObjectMeta> {
    const signal = options?.signal;
    assertPrefix(prefix, this.name);
    this.#open();
    throwIfAborted(signal);
    const strip = this.config.prefix.length;
    // Paging by StartAfter (the last key seen) rather than continuation tokens:
    // every S3-compatible store supports it (s3rver's tokens need DES, gone in OpenSSL 3).
    let after: string | undefined;
    for (;;) {
      const page = await this.#retry('list', undefined, signal, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: this.config.prefix + prefix,
            MaxKeys: this.config.listPageSize,
            ...(after !== undefined ? { StartAfter: after } : {}),
          }),
          { abortSignal: signal },
        ),
      );
      for (const o of page.Contents ?? []) {
        throwIfAborted(signal);
        if (!o.Key) continue;
        const key = o.Key.slice(strip);
        // Objects other tools made under names tierkit cannot address (folder markers, '//').
        if (keyProblem(key) !== undefined) continue;
        yield {
          key,
          size: o.Size ?? 0,
          ...(o.ETag ? { etag: o.ETag } : {}),
          ...(o.LastModified ? { lastModified: o.LastModified.getTime() } : {}),
        };
      }
      const last = page.Contents?.at(-1)?.Key;
      if (!page.IsTruncated || last === undefined || last === after) return;
      after = last;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#direct?.close();
    if (this.#ownsClient) this.client.destroy();
  }

  // ---------------------------------------------------------------- helpers

  #check(key: string, signal: AbortSignal | undefined): void {
    assertKey(key, this.name);
    this.#open();
    throwIfAborted(signal, key);
  }

  #open(): void {
    if (this.#closed) throw new TierError('CLOSED', `tier '${this.name}' is closed`, { retryable: false });
  }

  /** Bounded attempts with exponential backoff and full jitter, on retryable errors only. */
  async #retry<T>(
    op: string,
    key: string | undefined,
    signal: AbortSignal | undefined,
    fn: (attempt: number) => Promise<T>,
    attemptsUsed = 0,
  ): Promise<T> {
    const { attempts, baseDelayMs, maxDelayMs } = this.config.retry;
    for (let attempt = attemptsUsed + 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (err) {
        if (signal?.aborted) throw abortError(signal, key);
        const te = toTierError(err, { op, key, tier: this.name, signal });
        if (!te.retryable || attempt >= attempts) throw te;
        // Throttling asks for a longer pause than a dropped connection.
        const throttled = statusOf(err) === 503 || statusOf(err) === 429 || errorName(err) === 'SlowDown';
        const cap = Math.min(maxDelayMs, baseDelayMs * (throttled ? 4 : 1) * 2 ** (attempt - 1));
        await sleep(Math.random() * cap, signal);
      }
    }
  }
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
      if (attempt >= 4 || !isTierError(err, 'CHANGED') || err.details?.restartable !== true) throw err;
    }
  }
}

function checkChunk(chunk: unknown, key: string): Uint8Array {
  if (!(chunk instanceof Uint8Array)) {
    throw new TierError('INVALID_ARGUMENT', 'write streams must yield Uint8Array chunks', {
      key,
      retryable: false,
    });
  }
  return chunk;
}

async function* chunksOf(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

/** The SDK's SigV4 signer, configured as the S3 client signs (no double-escaped paths). */
function sigV4(init: ConstructorParameters<typeof SignatureV4>[0]): RequestSigner {
  const signer = new SignatureV4(init);
  // sign() is overloaded (strings, events, requests); ours is always a request.
  const signRequest = signer.sign.bind(signer) as (r: RequestSigned) => Promise<RequestSigned>;
  return { sign: signRequest };
}

function clientConfig(c: ResolvedS3Config, o: S3TierOptions): S3ClientConfig {
  const agentOptions = { keepAlive: true, maxSockets: c.maxSockets };
  return {
    ...(c.region ? { region: c.region } : c.endpoint ? { region: 'us-east-1' } : {}),
    ...(c.endpoint ? { endpoint: c.endpoint } : {}),
    forcePathStyle: c.forcePathStyle,
    ...(o.credentials ? { credentials: { ...o.credentials } } : {}),
    ...(c.requestChecksumCalculation ? { requestChecksumCalculation: c.requestChecksumCalculation } : {}),
    ...(c.responseChecksumValidation ? { responseChecksumValidation: c.responseChecksumValidation } : {}),
    // Retries are ours: per range, resuming, and aware of truncated bodies.
    maxAttempts: 1,
    requestHandler: {
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(agentOptions),
      requestTimeout: c.requestTimeoutMs,
      connectionTimeout: c.connectionTimeoutMs,
    },
  };
}

export function createS3Tier(options: S3TierOptions): S3Tier {
  return new S3Tier(options);
}

/** `s3://bucket/prefix?region=…&endpoint=…`; `extra` (e.g. `{ client }`) wins over the URL. */
export function s3TierFromUrl(url: string | URL, extra?: Partial<S3TierOptions>): S3Tier {
  return new S3Tier(optionsFromUrl(url, extra));
}
