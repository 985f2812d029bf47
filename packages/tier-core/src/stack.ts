/**
 * A stack is tiers ordered fast-to-slow, the last one the origin. It reads
 * through (top first), promotes what it found into the tiers above, validates
 * cached copies against the origin, and is itself a Tier, so stacks nest.
 */
import { PassThrough, type Readable } from 'node:stream';
import { BlockFill } from './block-fill.js';
import { prestartDigestWorker } from './digest-worker.js';
import { abortError, isTierError, TierError, throwIfAborted } from './errors.js';
import { assertKey } from './keys.js';
import { resolveIntoRange, resolveRange } from './ranges.js';
import type {
  BlockCache,
  DigestAlgorithm,
  ListOptions,
  ObjectDigest,
  ObjectMeta,
  OpOptions,
  ReadIntoOptions,
  ReadOptions,
  SourceMeta,
  Tier,
  TierCapability,
  WriteData,
  WriteOptions,
} from './tier.js';
import { isBlockCache, TIER_SPEC } from './tier.js';

/**
 * When cached copies are checked against the origin (size and ETag):
 * - `never`: a cached copy is trusted (immutable origins, offline use);
 * - `first-open`: once per key per stack instance (the default);
 * - `{ ttlMs }`: again when the last check is older than `ttlMs`.
 */
export type ValidateMode = 'never' | 'first-open' | { readonly ttlMs: number };

export interface StackOptions {
  readonly name?: string;
  /** `through`: writes go to the origin, then to every cache tier; `around`: to the origin only (caches are invalidated). */
  readonly writeMode?: 'through' | 'around';
  readonly validate?: ValidateMode;
  /** Copy what is read from a lower tier into the tiers above (default true). */
  readonly promote?: boolean;
  /** Serve a cached copy when the origin cannot be reached to validate it (default false). */
  readonly staleIfError?: boolean;
  /** `close()` closes the tiers too (default true). */
  readonly closeTiers?: boolean;
  /**
   * Block size of block-granular fills (default 8 MiB): a cache tier that can
   * hold partial objects (tier-fs) is filled block by block with ranged reads,
   * so a range read fetches only the blocks it touches.
   */
  readonly blockSize?: number;
  /**
   * Requests of one object in flight at once (default 8). Consecutive missing
   * blocks form spans of at most `spanBytes` (default 64 MiB) and one piece of
   * about 8 MiB; each is claimed and fetched with one request, lowest blocks
   * first, so writes and the digest overlap the transfer. A span's request
   * slot is freed when its GET ends (its writes go on, within a bounded
   * backlog). Raise it for a store where one connection is slow (16 for
   * ~25 MiB/s per connection); the origin tier's own request limit
   * (tier-s3 `maxRequestsInFlight`) still bounds requests across objects.
   */
  readonly fillConcurrency?: number;
  readonly spanBytes?: number;
  /** How often a reader looks for a block another process is fetching (ms, default 25). */
  readonly fillPollMs?: number;
  readonly clock?: () => number;
  /** Told of failures the stack absorbs (a promotion that did not fit, a stale entry it could not drop). */
  readonly onWarning?: (warning: { key: string; tier: string; op: string; error: unknown }) => void;
}

interface ResolvedStackOptions {
  writeMode: 'through' | 'around';
  validate: ValidateMode;
  promote: boolean;
  staleIfError: boolean;
  closeTiers: boolean;
  blockSize: number;
  fillConcurrency: number;
  spanBytes: number;
  fillPollMs: number;
  clock: () => number;
  onWarning?: StackOptions['onWarning'];
}

/** What a stack has done since it was built. */
export interface StackStats {
  /** Reads served, by the name of the tier that held the object. */
  readonly hitsByTier: Readonly<Record<string, number>>;
  /** Bytes served, by tier. */
  readonly bytesByTier: Readonly<Record<string, number>>;
  readonly misses: number;
  readonly promotions: number;
  readonly promotionFailures: number;
  readonly validations: number;
  readonly invalidations: number;
  /** Bytes fetched block by block into partial copies. */
  readonly blockBytesFetched: number;
  /**
   * Reads served straight from a lower tier because the cache above could not
   * hold the object (larger than its maxBytes, or out of space): `onWarning` says which, op 'bypass'.
   */
  readonly bypassed: number;
}

function resolveOptions(options: StackOptions): ResolvedStackOptions {
  const validate = options.validate ?? 'first-open';
  if (
    validate !== 'never' &&
    validate !== 'first-open' &&
    !(typeof validate === 'object' && Number.isFinite(validate.ttlMs) && validate.ttlMs >= 0)
  ) {
    throw new TierError('INVALID_ARGUMENT', `validate must be 'never', 'first-open' or { ttlMs ≥ 0 }`, {
      retryable: false,
    });
  }
  const writeMode = options.writeMode ?? 'through';
  if (writeMode !== 'through' && writeMode !== 'around') {
    throw new TierError('INVALID_ARGUMENT', `writeMode must be 'through' or 'around', got '${writeMode}'`, {
      retryable: false,
    });
  }
  const positive = (name: string, v: number | undefined, dflt: number) => {
    const n = v ?? dflt;
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new TierError('INVALID_ARGUMENT', `${name} must be a positive integer, got ${v}`, {
        retryable: false,
      });
    }
    return n;
  };
  return {
    writeMode,
    validate,
    blockSize: positive('blockSize', options.blockSize, 8 * 1024 * 1024),
    fillConcurrency: positive('fillConcurrency', options.fillConcurrency, 8),
    spanBytes: positive('spanBytes', options.spanBytes, 64 * 1024 * 1024),
    fillPollMs: positive('fillPollMs', options.fillPollMs, 25),
    promote: options.promote ?? true,
    staleIfError: options.staleIfError ?? false,
    closeTiers: options.closeTiers ?? true,
    clock: options.clock ?? Date.now,
    onWarning: options.onWarning,
  };
}

/** Does a cached copy still match the origin? A copy of unknown provenance does not. */
export function matchesSource(cached: ObjectMeta, origin: ObjectMeta | SourceMeta): boolean {
  const src = cached.source;
  if (!src) return false;
  if (src.size !== origin.size || cached.size !== origin.size) return false;
  if (src.etag !== undefined && origin.etag !== undefined) return src.etag === origin.etag;
  return src.etag === undefined && origin.etag === undefined;
}

/** The identity of `meta` as an origin: a copy reports its own source. */
function sourceOf(meta: ObjectMeta): SourceMeta {
  if (meta.source) return meta.source;
  return {
    size: meta.size,
    etag: meta.etag,
    lastModified: meta.lastModified,
    ...(meta.digests ? { digests: meta.digests } : {}),
  };
}

class Stack implements Tier {
  readonly spec = TIER_SPEC;
  readonly name: string;
  readonly capability: TierCapability;
  readonly #tiers: readonly Tier[];
  readonly #origin: Tier;
  readonly #caches: readonly Tier[];
  readonly #o: ResolvedStackOptions;
  /** Key → time of its last successful validation. */
  readonly #validated = new Map<string, number>();
  readonly #validating = new Map<string, Promise<Asked>>();
  /** Key → promotion in flight, resolving to the index of the highest tier now holding it. */
  readonly #promoting = new Map<string, Promise<number>>();
  readonly #hits: Record<string, number> = {};
  readonly #bytes: Record<string, number> = {};
  #misses = 0;
  #promotions = 0;
  #promotionFailures = 0;
  #validations = 0;
  #invalidations = 0;
  #blockBytes = 0;
  #bypassed = 0;
  #closed = false;
  /** Key → block fill in progress, with the number of readers using it. */
  readonly #fills = new Map<string, FillSlot>();
  /** Fills being closed after their last reader left (awaited by `close`). */
  readonly #closing = new Set<Promise<void>>();

  constructor(tiers: readonly Tier[], options: StackOptions) {
    if (tiers.length === 0) {
      throw new TierError('INVALID_ARGUMENT', 'a stack needs at least one tier', { retryable: false });
    }
    const names = new Set<string>();
    for (const t of tiers) {
      if (t?.spec !== TIER_SPEC) {
        throw new TierError('INVALID_ARGUMENT', `stack member '${t?.name}' does not implement ${TIER_SPEC}`, {
          retryable: false,
        });
      }
      if (names.has(t.name)) {
        throw new TierError('INVALID_ARGUMENT', `two stack members are named '${t.name}': give each a name`, {
          retryable: false,
        });
      }
      names.add(t.name);
    }
    this.#tiers = [...tiers];
    this.#origin = tiers[tiers.length - 1]!;
    this.#caches = tiers.slice(0, -1);
    this.#o = resolveOptions(options);
    this.name = options.name ?? `stack(${tiers.map((t) => t.name).join(',')})`;
    const o = this.#origin.capability;
    this.capability = Object.freeze({
      write: o.write,
      delete: o.write || o.delete,
      list: o.list,
      rangeRead: true,
      readInto: true,
      etag: o.etag,
      sourceMeta: false,
      deviceMemory: tiers[0]!.capability.deviceMemory,
      persistent: o.persistent,
    });
    for (const t of tiers) {
      this.#hits[t.name] = 0;
      this.#bytes[t.name] = 0;
    }
  }

  get tiers(): readonly Tier[] {
    return this.#tiers;
  }

  stats(): StackStats {
    return {
      hitsByTier: { ...this.#hits },
      bytesByTier: { ...this.#bytes },
      misses: this.#misses,
      promotions: this.#promotions,
      promotionFailures: this.#promotionFailures,
      validations: this.#validations,
      invalidations: this.#invalidations,
      blockBytesFetched: this.#blockBytes,
      bypassed: this.#bypassed,
    };
  }

  async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    this.#check(key, options?.signal);
    await this.#validate(key, options?.signal);
    for (const t of this.#tiers) {
      const m = await t.stat(key, options);
      if (m) return t === this.#origin ? m : asStackMeta(m);
    }
    return undefined;
  }

  read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return this.#serve(key, options, {
      op: (t) => t.read(key, { range: options?.range, signal: options?.signal }),
      size: (b) => b.byteLength,
      blocks: async (fill, size) => {
        const r = resolveRange(options?.range, size, key);
        const out = new Uint8Array(r.length);
        await fill.readInto(out, r.offset, options?.signal);
        return out;
      },
    });
  }

  readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    return this.#serve(key, options, {
      op: (t) =>
        t.readInto(key, target, {
          offset: options?.offset,
          length: options?.length,
          signal: options?.signal,
        }),
      size: (n) => n,
      blocks: async (fill, size) => {
        const r = resolveIntoRange(target, options?.offset, options?.length, size, key);
        await fill.readInto(target.subarray(0, r.length), r.offset, options?.signal);
        return r.length;
      },
    });
  }

  readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    return this.#serve(key, options, {
      op: (t) => t.readStream(key, { range: options?.range, signal: options?.signal }),
      size: () => 0,
      blocks: async (fill, size, finish, from) => {
        const r = resolveRange(options?.range, size, key);
        // A stream that completes the copy publishes it before it ends. One whose blocks the
        // cache cannot store (a disk filling up meanwhile) goes on from the origin, where it stopped.
        return continueFrom(
          fill.stream(r.offset, r.length, options?.signal, finish),
          (at) =>
            at === r.length
              ? Promise.resolve(undefined)
              : from.tier.readStream(key, {
                  range: { offset: r.offset + at, length: r.length - at },
                  ifMatch: from.etag,
                  signal: options?.signal,
                }),
          (error) => {
            this.#bypassed++;
            this.#o.onWarning?.({ key, tier: from.cache, op: 'bypass', error });
          },
        );
      },
      streaming: true,
    });
  }

  /**
   * Makes `key` complete in the top tier that can hold it, fetching only what
   * is missing (block by block where a tier can hold partial copies), and
   * resolves to the stack's view of it; undefined if no tier has it. This is
   * what pre-warming is built on. With `options.digests`, a fill that fetches
   * the object computes those digests as the bytes arrive and reports them in
   * the result's `digests` (absent when nothing was fetched).
   */
  async fill(key: string, options?: FillOptions): Promise<FillResult | undefined> {
    const signal = options?.signal;
    this.#check(key, signal);
    // A block fill from the origin digests its bytes: the thread boots while the HEAD is out.
    if (this.#blockTierAbove(this.#tiers.length - 1) !== undefined) prestartDigestWorker();
    const asked = await this.#validate(key, signal);
    for (let i = 0; i < this.#tiers.length; i++) {
      const t = this.#tiers[i]!;
      // (A fresh validation already asked the origin: one HEAD fewer before a cold fill.)
      const meta =
        t === this.#origin ? await this.#originMeta(key, asked, signal) : await t.stat(key, { signal });
      if (!meta) continue;
      if (i === 0 || !this.#o.promote) return i === this.#tiers.length - 1 ? meta : asStackMeta(meta);
      const b = this.#blockTierAbove(i);
      let digests: readonly ObjectDigest[] | undefined;
      if (b !== undefined) {
        const done = await this.#serveBlocksRetrying(b, i, key, meta, signal, {
          op: async (t) => (await t.stat(key, { signal }))?.size,
          size: () => 0,
          blocks: async (fill, size, finish) => {
            const tracked = options?.digests ? fill.track(options.digests) : false;
            await fill.ensure(...fill.blocksOf(0, size), signal);
            await finish();
            if (tracked) digests = fill.digests;
            return size;
          },
        }).catch((error: unknown) => this.#skipFill(key, b, error));
        if (done === undefined) continue;
        if (done instanceof TierError) {
          // Not kept: the object does not fit the cache. Readers are served from tier i straight through.
          const seen = i === this.#tiers.length - 1 ? meta : asStackMeta(meta);
          return { ...seen, notCached: notCachedOf(this.#tiers[b]!.name, done) };
        }
      } else {
        await this.#promote(i, key, meta, signal);
      }
      const now = await this.stat(key, { signal });
      return now && digests ? { ...now, digests } : now;
    }
    return undefined;
  }

  async write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    this.#check(key, options?.signal);
    if (!this.capability.write) {
      throw new TierError(
        'UNSUPPORTED',
        `origin '${this.#origin.name}' of stack '${this.name}' is read-only`,
        {
          key,
          retryable: false,
        },
      );
    }
    // Caches first lose the old copy: from here on nothing can serve it.
    await this.#dropCached(key, 'write');
    const meta = await this.#origin.write(key, data, options);
    const source = sourceOf(meta);
    this.#validated.set(key, this.#o.clock());
    if (this.#o.writeMode === 'through') {
      if (data instanceof Uint8Array) {
        await Promise.all(
          this.#caches.map((t) =>
            this.#tryCache(key, t, () => t.write(key, data, { source, signal: options?.signal })),
          ),
        );
      } else if (this.#caches.length > 0) {
        // A stream cannot be read twice: fill the caches from the origin's copy.
        await this.#promoteFrom(this.#tiers.length - 1, key, meta, options?.signal).catch(() => undefined);
      }
    }
    return meta;
  }

  async delete(key: string, options?: OpOptions): Promise<void> {
    this.#check(key, options?.signal);
    // The origin first: a reader racing this delete may re-promote from a cache only
    // before the origin's copy is gone, and we drop the caches after.
    await this.#origin.delete(key, options);
    await this.#dropCached(key, 'delete');
    this.#validated.delete(key);
  }

  async *list(prefix?: string, options?: ListOptions): AsyncIterable<ObjectMeta> {
    this.#open();
    yield* this.#origin.list(prefix, options);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#promoting.values()].map((p) => p.catch(() => undefined)));
    await Promise.all([...this.#closing]);
    if (this.#o.closeTiers) await Promise.all(this.#tiers.map((t) => t.close()));
  }

  // — internals —

  async #serve<T>(
    key: string,
    options: { signal?: AbortSignal; ifMatch?: string } | undefined,
    how: ServeHow<T>,
  ): Promise<T | undefined> {
    const signal = options?.signal;
    this.#check(key, signal);
    const asked = await this.#validate(key, signal);
    if (options?.ifMatch !== undefined) {
      // The caller's ETag is the origin's; cached copies carry it as their source.
      const now = await this.stat(key, { signal });
      if (now && now.etag !== options.ifMatch) {
        throw new TierError('CHANGED', `'${key}' changed: ETag ${now.etag}, expected ${options.ifMatch}`, {
          key,
          tier: this.name,
          retryable: false,
        });
      }
    }
    // The fast path: the top tier has it.
    const top = this.#tiers[0]!;
    const first = await how.op(top).catch((error: unknown) => {
      // A cached copy that failed its checksum was dropped by its tier: read on, as after a miss.
      if (top === this.#origin || !droppedAsCorrupt(error)) throw error;
      this.#o.onWarning?.({ key, tier: top.name, op: 'verify', error });
      return undefined;
    });
    if (first !== undefined) return this.#count(top, first, how.size);
    for (let i = 1; i < this.#tiers.length; i++) {
      const t = this.#tiers[i]!;
      if (!this.#o.promote) {
        const v = await how.op(t);
        if (v !== undefined) return this.#count(t, v, how.size);
        continue;
      }
      const meta =
        t === this.#origin ? await this.#originMeta(key, asked, signal) : await t.stat(key, { signal });
      if (!meta) continue;
      const b = this.#blockTierAbove(i);
      if (b !== undefined) {
        try {
          return await this.#serveBlocksRetrying(b, i, key, meta, signal, how);
        } catch (error) {
          // A cache too small for the object (or out of space) never fails the read: the
          // tier that holds it serves it straight through, ranges and all.
          if (!isTierError(error, 'CAPACITY')) throw error;
          this.#bypassed++;
          this.#o.onWarning?.({ key, tier: this.#tiers[b]!.name, op: 'bypass', error });
          const v = await how.op(t);
          if (v !== undefined) return this.#count(t, v, how.size);
          continue;
        }
      }
      const holder = await this.#promote(i, key, meta, signal);
      // Serve from the highest tier that now holds it; fall back downwards if it vanished.
      for (let j = holder; j <= i; j++) {
        const v = await how.op(this.#tiers[j]!);
        if (v !== undefined) return this.#count(this.#tiers[j]!, v, how.size);
      }
    }
    this.#misses++;
    return undefined;
  }

  /**
   * A fill the cache above could not hold (CAPACITY): counted and told as a
   * bypass, and handed back as the reason; any other error is thrown on.
   */
  #skipFill(key: string, b: number, error: unknown): TierError {
    if (!isTierError(error, 'CAPACITY')) throw error;
    this.#bypassed++;
    this.#o.onWarning?.({ key, tier: this.#tiers[b]!.name, op: 'bypass', error });
    return error;
  }

  /** The nearest tier above `i` that can hold partial copies, when tier `i` serves ranges. */
  #blockTierAbove(i: number): number | undefined {
    if (!this.#tiers[i]!.capability.rangeRead) return undefined;
    for (let j = i - 1; j >= 0; j--) {
      const t = this.#tiers[j]!;
      if (isBlockCache(t) && t.capability.write) return j;
    }
    return undefined;
  }

  /**
   * An object replaced at the source during a fill fails the fill with CHANGED;
   * the read then starts over against the new version, so the caller gets one
   * version whole. An object that keeps changing is reported.
   */
  async #serveBlocksRetrying<T>(
    b: number,
    i: number,
    key: string,
    meta: ObjectMeta,
    signal: AbortSignal | undefined,
    how: ServeHow<T>,
  ): Promise<T | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#serveBlocks(b, i, key, meta, signal, how);
      } catch (err) {
        if (!isTierError(err, 'CHANGED') || attempt >= 3) throw err;
        const now = await this.#tiers[i]!.stat(key, { signal });
        if (!now) {
          this.#misses++;
          return undefined;
        }
        meta = now;
      }
    }
  }

  /**
   * Serves a read from a partial copy in tier `b`, filled from tier `i` block
   * by block. When the copy is complete it is published, and copied further up.
   */
  async #serveBlocks<T>(
    b: number,
    i: number,
    key: string,
    meta: ObjectMeta,
    signal: AbortSignal | undefined,
    how: ServeHow<T>,
  ): Promise<T | undefined> {
    const source = sourceOf(meta);
    const slot = await this.#openFill(b, i, key, source, signal);
    const fill = await slot.fill;
    let handedOff = false;
    try {
      // Another process may have published the copy between our miss and our open
      // (and retired the partial we would have shared): serve the copy, fetch nothing.
      const cache = this.#tiers[b]!;
      const published = await cache.stat(key, { signal });
      if (published && matchesSource(published, source)) {
        const v = await how.op(cache);
        if (v !== undefined) return this.#count(cache, v, how.size);
      }
      const v = await how.blocks(fill, meta.size, () => this.#finishFill(b, key, meta, fill), {
        tier: this.#tiers[i]!,
        etag: meta.etag,
        cache: this.#tiers[b]!.name,
      });
      // Served from the cache's partial copy; what came from the origin is `blockBytesFetched`.
      this.#count(this.#tiers[b]!, v, how.size);
      if (how.streaming) {
        handedOff = true;
        (v as unknown as Readable).once('close', () => void this.#closeFill(key, slot, false));
      } else {
        await this.#finishFill(b, key, meta, fill);
      }
      return v;
    } finally {
      // A reader that gave up (its signal) does not wait for the fill to wind down.
      if (!handedOff) await this.#closeFill(key, slot, !signal?.aborted);
    }
  }

  /** Publishes a complete partial copy and promotes it into the tiers above. */
  async #finishFill(b: number, key: string, meta: ObjectMeta, fill: BlockFill): Promise<void> {
    if (!fill.complete) return;
    try {
      await fill.publish();
      if (b > 0) await this.#promote(b, key, meta, undefined);
    } catch (error) {
      this.#o.onWarning?.({ key, tier: this.#tiers[b]!.name, op: 'publish', error });
    }
  }

  /**
   * The fill of `key` that this reader joins (one per key and version), opened
   * without the reader's signal: other readers share it. The reader's signal
   * only ends its own wait.
   */
  async #openFill(
    b: number,
    i: number,
    key: string,
    source: SourceMeta,
    signal: AbortSignal | undefined,
  ): Promise<FillSlot & { fill: Promise<BlockFill> }> {
    for (;;) {
      let slot = this.#fills.get(key);
      if (slot?.closing) {
        // The last fill of this key is winding down: its entry closes before another opens.
        await raceSignal(
          slot.closing.catch(() => undefined),
          signal,
          key,
        );
        continue;
      }
      if (slot && slot.etag !== source.etag) slot = undefined;
      if (!slot) {
        const cache = this.#tiers[b]! as Tier & BlockCache;
        const fill = cache.openPartial(key, source, { blockSize: this.#o.blockSize }).then(
          (entry) =>
            new BlockFill(entry, this.#tiers[i]!, source.etag, {
              concurrency: this.#o.fillConcurrency,
              spanBytes: this.#o.spanBytes,
              pollMs: this.#o.fillPollMs,
              ...(source.digests ? { digests: source.digests } : {}),
            }),
        );
        fill.catch(() => undefined);
        slot = { fill, etag: source.etag, refs: 0 };
        this.#fills.set(key, slot);
      }
      slot.refs++;
      try {
        await raceSignal(slot.fill, signal, key);
        return slot;
      } catch (err) {
        await this.#closeFill(key, slot, false);
        throw err;
      }
    }
  }

  /**
   * One reader leaves the fill. The last one cancels it (source reads in flight
   * are aborted) and closes its entry; `wait` says whether the reader waits for
   * that (a reader that gave up does not).
   */
  async #closeFill(key: string, slot: FillSlot, wait: boolean): Promise<void> {
    if (--slot.refs > 0) return;
    const closing = (async () => {
      let fill: BlockFill;
      try {
        fill = await slot.fill;
      } catch {
        return; // never opened: nothing to close
      }
      fill.cancel();
      // Fetches still running must finish before their entry closes.
      await fill.settle();
      this.#blockBytes += fill.fetchedBytes;
      fill.fetchedBytes = 0;
      await fill.entry.close();
    })()
      .catch((error) => this.#o.onWarning?.({ key, tier: this.name, op: 'close-fill', error }))
      .finally(() => {
        if (this.#fills.get(key) === slot) this.#fills.delete(key);
        this.#closing.delete(closing);
      });
    slot.closing = closing;
    this.#closing.add(closing);
    if (wait) await closing;
  }

  #count<T>(t: Tier, v: T, size: (v: T) => number): T {
    this.#hits[t.name]!++;
    this.#bytes[t.name]! += size(v);
    return v;
  }

  /** One promotion per key at a time; later readers wait for it. */
  #promote(from: number, key: string, meta: ObjectMeta, signal: AbortSignal | undefined): Promise<number> {
    let p = this.#promoting.get(key);
    if (!p) {
      // Not tied to one caller's signal: others may be waiting for the same copy.
      p = this.#promoteFrom(from, key, meta, undefined).finally(() => this.#promoting.delete(key));
      this.#promoting.set(key, p);
    }
    return raceSignal(p, signal, key);
  }

  /**
   * Copies `key` from tier `from` up into each tier above it, one level at a
   * time (each copy streams from the tier just below). Returns the index of the
   * highest tier holding the object afterwards.
   */
  async #promoteFrom(
    from: number,
    key: string,
    meta: ObjectMeta,
    signal: AbortSignal | undefined,
  ): Promise<number> {
    const source = sourceOf(meta);
    let holder = from;
    for (let j = from - 1; j >= 0; j--) {
      const target = this.#tiers[j]!;
      if (!target.capability.write) continue;
      const ok = await this.#tryCache(key, target, async () => {
        const stream = await this.#tiers[holder]!.readStream(key, { signal });
        if (!stream)
          throw new TierError('NOT_FOUND', `'${key}' vanished from '${this.#tiers[holder]!.name}'`);
        await target.write(key, stream, { size: meta.size, source, signal });
      });
      if (!ok) break;
      this.#promotions++;
      holder = j;
    }
    return holder;
  }

  async #tryCache(key: string, t: Tier, fn: () => Promise<unknown>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (error) {
      this.#promotionFailures++;
      this.#o.onWarning?.({ key, tier: t.name, op: 'promote', error });
      return false;
    }
  }

  async #dropCached(key: string, op: string): Promise<void> {
    await Promise.all(
      this.#caches.map(async (t) => {
        if (!t.capability.delete) return;
        try {
          await t.delete(key);
        } catch (error) {
          this.#o.onWarning?.({ key, tier: t.name, op, error });
          throw error;
        }
      }),
    );
  }

  /** Revalidates `key` when due; resolves to the origin's meta when it asked the origin for it. */
  #validate(key: string, signal: AbortSignal | undefined): Promise<Asked> {
    const mode = this.#o.validate;
    if (mode === 'never' || this.#caches.length === 0) return Promise.resolve(NOT_ASKED);
    const last = this.#validated.get(key);
    if (last !== undefined && (mode === 'first-open' || this.#o.clock() - last < mode.ttlMs)) {
      return Promise.resolve(NOT_ASKED);
    }
    let p = this.#validating.get(key);
    if (!p) {
      // Shared by every reader of the key: never under one reader's signal.
      p = this.#revalidate(key).finally(() => this.#validating.delete(key));
      this.#validating.set(key, p);
    }
    return raceSignal(p, signal, key);
  }

  /** Checks the cached copies of `key` against the origin (shared: under no reader's signal). */
  async #revalidate(key: string): Promise<Asked> {
    this.#validations++;
    let origin: ObjectMeta | undefined;
    try {
      origin = await this.#origin.stat(key);
    } catch (err) {
      if (this.#o.staleIfError && isTierError(err) && err.code !== 'ABORTED') {
        this.#o.onWarning?.({ key, tier: this.#origin.name, op: 'validate', error: err });
        return NOT_ASKED;
      }
      throw err;
    }
    const stale: Tier[] = [];
    for (const t of this.#caches) {
      const m = await t.stat(key);
      if (m && (!origin || !matchesSource(m, sourceOf(origin)))) stale.push(t);
    }
    for (const t of stale) {
      this.#invalidations++;
      await t.delete(key);
    }
    this.#validated.set(key, this.#o.clock());
    return origin;
  }

  /** The origin's meta: what validation just learned, else a stat. */
  #originMeta(key: string, asked: Asked, signal: AbortSignal | undefined): Promise<ObjectMeta | undefined> {
    return asked === NOT_ASKED ? this.#origin.stat(key, { signal }) : Promise.resolve(asked);
  }

  #check(key: string, signal: AbortSignal | undefined): void {
    assertKey(key, this.name);
    this.#open();
    throwIfAborted(signal, key);
  }

  #open(): void {
    if (this.#closed) throw new TierError('CLOSED', `stack '${this.name}' is closed`, { retryable: false });
  }
}

/** A fill of one key and version, shared by `refs` readers; `closing` once the last has left. */
interface FillSlot {
  readonly fill: Promise<BlockFill>;
  readonly etag: string | undefined;
  refs: number;
  closing?: Promise<void>;
}

/** Waits for `p`, or rejects with ABORTED as soon as `signal` fires; `p` runs on either way. */
function raceSignal<T>(p: Promise<T>, signal: AbortSignal | undefined, key: string): Promise<T> {
  if (!signal) return p;
  throwIfAborted(signal, key);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal, key));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** #validate did not ask the origin (not due, or the origin failed and staleIfError served on). */
const NOT_ASKED = Symbol('not asked');
type Asked = ObjectMeta | undefined | typeof NOT_ASKED;

/** A cached copy, seen through the stack: it carries the origin's identity. */
function asStackMeta(m: ObjectMeta): ObjectMeta {
  if (!m.source) return m;
  return {
    key: m.key,
    size: m.size,
    etag: m.source.etag ?? m.etag,
    lastModified: m.source.lastModified ?? m.lastModified,
  };
}

/** How one kind of read is served: from a tier, and from a partial copy. */
interface ServeHow<T> {
  op: (t: Tier) => Promise<T | undefined>;
  size: (v: T) => number;
  /** `finish` publishes the partial copy if it is complete (never throws). */
  /** `from`: the tier the fill fetches from (its version's ETag), and the cache's name. */
  blocks: (
    fill: BlockFill,
    size: number,
    finish: () => Promise<void>,
    from: { readonly tier: Tier; readonly etag: string | undefined; readonly cache: string },
  ) => Promise<T>;
  /** The result is a stream that reads the partial copy after `blocks` returns. */
  streaming?: boolean;
}

/**
 * What `fill` made of an object. `notCached`: the cache could not hold it (it
 * is larger than the cache's budget, or no room could be made) — not an error:
 * reads are served from the tier that holds it, and `onWarning` said so (op 'bypass').
 */
export type FillResult = ObjectMeta & { readonly notCached?: NotCached };

export interface NotCached {
  /** The cache tier that could not hold the object. */
  readonly tier: string;
  /** `too-large`: larger than the cache's byte budget; `no-room`: nothing more could be evicted, or the disk is full. */
  readonly reason: 'too-large' | 'no-room';
  readonly message: string;
}

function notCachedOf(tier: string, error: TierError): NotCached {
  const details = error.details as { maxBytes?: unknown } | undefined;
  return {
    tier,
    reason: typeof details?.maxBytes === 'number' ? 'too-large' : 'no-room',
    message: error.message,
  };
}

export interface FillOptions extends OpOptions {
  /** Whole-object digests to compute while the fill fetches (e.g. sha256 to record for `verify`). */
  readonly digests?: readonly DigestAlgorithm[];
}

export type StackTier = Tier & {
  readonly tiers: readonly Tier[];
  fill(key: string, options?: FillOptions): Promise<FillResult | undefined>;
  stats(): StackStats;
};

/** Builds a stack: `tiers[0]` is the fastest, the last is the origin. */
export function createStack(tiers: readonly Tier[], options: StackOptions = {}): StackTier {
  return new Stack(tiers, options);
}

/** Applies layers to a tier, innermost first: `compose(t, a, b)` is `b(a(t))`. */
export function compose(tier: Tier, ...layers: readonly ((inner: Tier) => Tier)[]): Tier {
  return layers.reduce((t, layer) => layer(t), tier);
}

/** An INTEGRITY error of a cache tier that dropped the entry whose bytes failed their check (tier-fs `verify`). */
function droppedAsCorrupt(error: unknown): boolean {
  return (
    isTierError(error, 'INTEGRITY') && (error.details as { dropped?: unknown } | undefined)?.dropped === true
  );
}

/**
 * The stream of a partial copy, carried on by `resume(bytesDelivered)` (the
 * origin, from where it stopped) when the cache fails to store a block
 * (CAPACITY: out of space, or its copy evicted): the reader gets every byte,
 * in order, once. `resume` resolving to undefined means nothing was left.
 */
function continueFrom(
  inner: Readable,
  resume: (at: number) => Promise<Readable | undefined>,
  onBypass: (error: TierError) => void,
): Readable {
  const out = new PassThrough();
  let delivered = 0;
  let current = inner;
  const pipe = (src: Readable) => {
    current = src;
    src.on('data', (chunk: Uint8Array) => {
      delivered += chunk.byteLength;
      if (!out.write(chunk)) {
        src.pause();
        out.once('drain', () => src.resume());
      }
    });
    src.once('end', () => out.end());
    src.once('error', (err: unknown) => {
      if (src !== inner || !isTierError(err, 'CAPACITY') || out.destroyed) {
        out.destroy(err as Error);
        return;
      }
      resume(delivered).then(
        (next) => {
          onBypass(err);
          if (!next) out.end();
          else if (out.destroyed) next.destroy();
          else pipe(next);
        },
        (e: unknown) => out.destroy(e as Error),
      );
    });
  };
  out.once('close', () => {
    if (!current.destroyed) current.destroy();
    if (!inner.destroyed) inner.destroy();
  });
  pipe(inner);
  return out;
}
