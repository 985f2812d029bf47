/**
 * KV-cache chunk offload over any tier or stack, in the shape LMCache users
 * know: chunk token ids, ask how long a prefix is cached, store and load chunks
 * in batches, pin, and let eviction drop a request's suffix before its prefix.
 */
import { type OpOptions, type Policy, type Tier, TierError, throwIfAborted } from '@tierkit/tier-core';
import { checkChunkSize, chunkHashes, type TokenChunk, type TokenIds } from './hash.js';
import { kvKeyPrefix, kvKeyTail } from './keys.js';

export interface KvStoreOptions {
  /** Where chunks live: one tier or a stack (`createStack([memory, fs])`). */
  readonly tier: Tier;
  readonly model: string;
  /** Tensor-parallel world size (default 1). */
  readonly worldSize?: number;
  /** This worker's rank, below `worldSize` (default 0). */
  readonly workerId?: number;
  /** Tokens per chunk (default 256). */
  readonly chunkSize?: number;
  /** Hash a trailing chunk shorter than `chunkSize` (default true). */
  readonly partialChunks?: boolean;
  /** Extra identity of every chunk (LoRA id, dtype …). */
  readonly tags?: Readonly<Record<string, string>>;
  /** First segment(s) of every tier key (default 'kv'). */
  readonly namespace?: string;
  /** Chunks read, written or checked at once (default 8). */
  readonly concurrency?: number;
  /**
   * Policies to receive the prefix-first eviction hint, beside the ones found
   * on the tiers (`tier.policy`, as tier-fs exposes). Pass the policy you gave a
   * memory tier: `createMemoryTier({ policy })`.
   */
  readonly policies?: readonly Policy[];
  /** Give every batch's chunks a prefix-kept eviction order (default true). */
  readonly keepPrefix?: boolean;
  /** Time source of the eviction hint (default `Date.now`); use the tiers' clock. */
  readonly clock?: () => number;
}

/** A chunk of a request, with its tier key. */
export interface KvChunk extends TokenChunk {
  readonly key: string;
}

export interface KvContainsOptions extends OpOptions {
  /**
   * Ask every tier (`stat`) instead of trusting in-process indexes first. An
   * index hit can be stale when another process evicted the chunk: `get` then
   * reports it as missing (default false).
   */
  readonly exact?: boolean;
}

export interface KvPutOptions extends OpOptions {
  /** Skip chunks already stored in some tier (default true; chunk bytes are named by their tokens). */
  readonly skipExisting?: boolean;
}

export interface KvPutResult {
  readonly written: number;
  readonly skipped: number;
  readonly bytes: number;
}

export interface KvGetOptions extends OpOptions {
  /**
   * Caller buffers, one per chunk, each at least the chunk's size: chunks are read
   * into them (no copy in tiers with `readInto`), and the result holds views of them.
   */
  readonly into?: readonly Uint8Array[];
}

export interface KvGetResult {
  /**
   * Leading chunks read. A miss ends the prefix: later chunks are not returned
   * (reads of the same wave already in flight may still have filled their targets).
   */
  readonly hits: number;
  /** The chunks' bytes, `undefined` from the first miss on. */
  readonly chunks: readonly (Uint8Array | undefined)[];
  readonly bytes: number;
}

export interface KvStats {
  readonly lookups: number;
  readonly lookupChunks: number;
  readonly prefixHitChunks: number;
  readonly gets: number;
  readonly chunksRead: number;
  readonly bytesRead: number;
  readonly chunksMissed: number;
  readonly puts: number;
  readonly chunksWritten: number;
  readonly chunksSkipped: number;
  readonly bytesWritten: number;
}

type Chunks = readonly KvChunk[];

function invalid(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', message, { retryable: false });
}

function isPolicy(v: unknown): v is Policy {
  const p = v as Partial<Policy> | undefined;
  return typeof p?.touch === 'function' && typeof p.has === 'function' && typeof p.victims === 'function';
}

type Pinnable = Tier & { pin(key: string): unknown; unpin(key: string): unknown };
function isPinnable(t: Tier): t is Pinnable {
  const p = t as Partial<Pinnable>;
  return typeof p.pin === 'function' && typeof p.unpin === 'function';
}

export class KvStore {
  readonly tier: Tier;
  readonly chunkSize: number;
  /** Every tier key of this store starts with this (model, ranks, tags). */
  readonly keyPrefix: string;
  readonly #partial: boolean;
  readonly #concurrency: number;
  readonly #keepPrefix: boolean;
  readonly #clock: () => number;
  /** The stack's members (or the tier alone), top first. */
  readonly #members: readonly Tier[];
  /** Member index → its policy, where one is exposed (an index answers `contains` without I/O). */
  readonly #indexes: readonly (Policy | undefined)[];
  /** Who gets the eviction hint: a member's own `touch` (which may persist it), else a policy. */
  readonly #hinted: readonly ((key: string, at: number) => void)[];
  #s = {
    lookups: 0,
    lookupChunks: 0,
    prefixHitChunks: 0,
    gets: 0,
    chunksRead: 0,
    bytesRead: 0,
    chunksMissed: 0,
    puts: 0,
    chunksWritten: 0,
    chunksSkipped: 0,
    bytesWritten: 0,
  };

  constructor(options: KvStoreOptions) {
    if (!options?.tier || typeof options.tier.readInto !== 'function')
      throw invalid('KvStore needs a `tier`');
    this.tier = options.tier;
    this.chunkSize = checkChunkSize(options.chunkSize);
    this.#partial = options.partialChunks ?? true;
    const c = options.concurrency ?? 8;
    if (!Number.isSafeInteger(c) || c < 1) throw invalid(`concurrency must be a positive integer, got ${c}`);
    this.#concurrency = c;
    this.#keepPrefix = options.keepPrefix ?? true;
    this.#clock = options.clock ?? Date.now;
    this.keyPrefix = kvKeyPrefix(
      {
        model: options.model,
        worldSize: options.worldSize ?? 1,
        workerId: options.workerId ?? 0,
        tags: options.tags,
      },
      options.namespace ?? 'kv',
    );
    const tiers = (options.tier as { tiers?: readonly Tier[] }).tiers;
    this.#members = Array.isArray(tiers) && tiers.length > 0 ? [...tiers] : [options.tier];
    this.#indexes = this.#members.map((t) => {
      const p = (t as { policy?: unknown }).policy;
      return isPolicy(p) ? p : undefined;
    });
    const hinted: ((key: string, at: number) => void)[] = [];
    const covered = new Set<Policy>();
    for (const [i, t] of this.#members.entries()) {
      const touch = (t as { touch?: unknown }).touch;
      const p = this.#indexes[i];
      if (typeof touch === 'function' && p) {
        // The tier's own touch moves its policy and records the time (tier-fs journals it).
        hinted.push((k, at) => touch.call(t, k, at));
        covered.add(p);
      }
    }
    const policies = new Set<Policy>([...(options.policies ?? []), ...this.#indexes.filter((p) => !!p)]);
    for (const p of policies) if (!covered.has(p)) hinted.push((k, at) => p.touch(k, at));
    this.#hinted = hinted;
  }

  /** The chunks of a token sequence, each with its hash and tier key. */
  chunks(tokens: TokenIds): KvChunk[] {
    return chunkHashes(tokens, { chunkSize: this.chunkSize, partial: this.#partial }).map((c) => ({
      ...c,
      key: this.keyOf(c.hash),
    }));
  }

  /** The tier key of a chunk hash. */
  keyOf(hash: string): string {
    return this.keyPrefix + kvKeyTail(hash);
  }

  /** How many leading chunks are stored, in any tier of the stack. */
  async contains(chunks: Chunks, options: KvContainsOptions = {}): Promise<number> {
    this.#s.lookups++;
    this.#s.lookupChunks += chunks.length;
    const exact = options.exact ?? false;
    // Waves of `concurrency` lookups; the first wave with a miss ends the prefix.
    let hits = 0;
    outer: for (let at = 0; at < chunks.length; at += this.#concurrency) {
      throwIfAborted(options.signal);
      const wave = chunks.slice(at, at + this.#concurrency);
      const found = await Promise.all(wave.map((c) => this.#has(c.key, exact, options.signal)));
      for (const f of found) {
        if (!f) break outer;
        hits++;
      }
    }
    this.#s.prefixHitChunks += hits;
    if (hits > 0) this.#hint(chunks, hits);
    return hits;
  }

  /**
   * Stores chunks (`data[i]` is chunk i's bytes), suffix first, so a cache too
   * small for the whole request keeps its prefix. Through a write-through stack
   * every tier gets a copy.
   */
  async put(chunks: Chunks, data: readonly Uint8Array[], options: KvPutOptions = {}): Promise<KvPutResult> {
    if (data.length !== chunks.length) {
      throw invalid(`put: ${chunks.length} chunks but ${data.length} buffers`);
    }
    for (let i = 0; i < data.length; i++) {
      if (!(data[i] instanceof Uint8Array)) throw invalid(`put: data[${i}] is not a Uint8Array`);
    }
    this.#s.puts++;
    const skip = options.skipExisting ?? true;
    let written = 0;
    let skipped = 0;
    let bytes = 0;
    for (let end = chunks.length; end > 0; end -= this.#concurrency) {
      throwIfAborted(options.signal);
      const from = Math.max(0, end - this.#concurrency);
      await Promise.all(
        Array.from({ length: end - from }, async (_, j) => {
          const i = end - 1 - j;
          const c = chunks[i]!;
          if (skip && (await this.#has(c.key, false, options.signal))) {
            skipped++;
            return;
          }
          await this.tier.write(c.key, data[i]!, { signal: options.signal });
          written++;
          bytes += data[i]!.byteLength;
        }),
      );
    }
    this.#s.chunksWritten += written;
    this.#s.chunksSkipped += skipped;
    this.#s.bytesWritten += bytes;
    this.#hint(chunks, chunks.length);
    return { written, skipped, bytes };
  }

  /** Loads the leading chunks that are stored; stops at the first miss. */
  async get(chunks: Chunks, options: KvGetOptions = {}): Promise<KvGetResult> {
    const into = options.into;
    if (into && into.length !== chunks.length) {
      throw invalid(`get: ${chunks.length} chunks but ${into.length} target buffers`);
    }
    this.#s.gets++;
    const out: (Uint8Array | undefined)[] = new Array(chunks.length).fill(undefined);
    let hits = 0;
    let bytes = 0;
    outer: for (let at = 0; at < chunks.length; at += this.#concurrency) {
      throwIfAborted(options.signal);
      const end = Math.min(at + this.#concurrency, chunks.length);
      // One chunk (the latency-bound case) is awaited directly: no batch bookkeeping.
      const got =
        end - at === 1
          ? [await this.#readOne(chunks[at]!, into?.[at], options.signal)]
          : await Promise.all(
              chunks.slice(at, end).map((c, j) => this.#readOne(c, into?.[at + j], options.signal)),
            );
      for (const b of got) {
        if (!b) break outer;
        out[hits++] = b;
        bytes += b.byteLength;
      }
    }
    // Chunks after the first miss are useless to the caller (no prefix reaches them).
    for (let i = hits; i < out.length; i++) out[i] = undefined;
    this.#s.chunksRead += hits;
    this.#s.bytesRead += bytes;
    this.#s.chunksMissed += chunks.length - hits;
    if (hits > 0) this.#hint(chunks, hits);
    return { hits, chunks: out, bytes };
  }

  /** Keeps chunks from eviction in every tier that pins (memory, fs). */
  async pin(chunks: Chunks): Promise<void> {
    for (const t of this.#members.filter(isPinnable)) {
      for (const c of chunks) await t.pin(c.key);
    }
  }

  async unpin(chunks: Chunks): Promise<void> {
    for (const t of this.#members.filter(isPinnable)) {
      for (const c of chunks) await t.unpin(c.key);
    }
  }

  /** Removes chunks from every tier (through the stack). */
  async delete(chunks: Chunks, options: OpOptions = {}): Promise<void> {
    for (let at = 0; at < chunks.length; at += this.#concurrency) {
      throwIfAborted(options.signal);
      await Promise.all(
        chunks
          .slice(at, at + this.#concurrency)
          .map((c) => this.tier.delete(c.key, { signal: options.signal })),
      );
    }
  }

  stats(): KvStats {
    return { ...this.#s };
  }

  async #readOne(
    c: KvChunk,
    target: Uint8Array | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Uint8Array | undefined> {
    if (!target) return this.tier.read(c.key, { signal });
    const n = await this.tier.readInto(c.key, target, { signal });
    return n === undefined ? undefined : target.subarray(0, n);
  }

  /** Is `key` in any member tier? An in-process index answers first unless `exact`. */
  async #has(key: string, exact: boolean, signal: AbortSignal | undefined): Promise<boolean> {
    if (!exact) {
      for (const p of this.#indexes) if (p?.has(key)) return true;
    }
    for (const t of this.#members) {
      if ((await t.stat(key, { signal })) !== undefined) return true;
    }
    return false;
  }

  /**
   * The eviction hint: touch a request's chunks last-to-first at one instant, so
   * in every LRU the suffix is older than the prefix and is evicted first. (The
   * tiers touched them during the batch, in whatever order the I/O finished.)
   */
  #hint(chunks: Chunks, count: number): void {
    if (!this.#keepPrefix || this.#hinted.length === 0) return;
    const now = this.#clock();
    for (const touch of this.#hinted) {
      for (let i = count - 1; i >= 0; i--) touch(chunks[i]!.key, now);
    }
  }
}

export function createKvStore(options: KvStoreOptions): KvStore {
  return new KvStore(options);
}
