/**
 * A tier in process memory, bounded by bytes through a Policy. The top of a
 * stack for hot small objects (KV chunks), and the reference tier for tests.
 */
import type { Readable } from 'node:stream';
import { collectBytes, streamOf } from './bytes.js';
import { TierError, throwIfAborted } from './errors.js';
import { assertKey, assertPrefix } from './keys.js';
import { MapLruPolicy, type Policy } from './policy.js';
import { resolveIntoRange, resolveRange } from './ranges.js';
import {
  type ListOptions,
  type ObjectMeta,
  type OpOptions,
  type ReadIntoOptions,
  type ReadOptions,
  type SourceMeta,
  TIER_SPEC,
  type Tier,
  type TierCapability,
  type WriteData,
  type WriteOptions,
} from './tier.js';

export interface MemoryTierOptions {
  readonly name?: string;
  /** Upper bound on stored bytes; least recently used entries are evicted to stay under it. */
  readonly maxBytes?: number;
  /** The eviction policy (default: an LRU). */
  readonly policy?: Policy;
  readonly clock?: () => number;
}

interface Entry {
  readonly bytes: Uint8Array;
  readonly etag: string;
  readonly lastModified: number;
  readonly source?: SourceMeta;
}

const CAPABILITY: TierCapability = Object.freeze({
  write: true,
  delete: true,
  list: true,
  rangeRead: true,
  readInto: true,
  etag: true,
  sourceMeta: true,
  deviceMemory: false,
  persistent: false,
});

export class MemoryTier implements Tier {
  readonly spec = TIER_SPEC;
  readonly capability = CAPABILITY;
  readonly name: string;
  readonly #entries = new Map<string, Entry>();
  readonly #policy: Policy;
  readonly #maxBytes: number;
  readonly #clock: () => number;
  #version = 0;
  #closed = false;

  constructor(options: MemoryTierOptions = {}) {
    this.name = options.name ?? 'memory';
    this.#clock = options.clock ?? Date.now;
    this.#policy = options.policy ?? new MapLruPolicy({ clock: this.#clock });
    const max = options.maxBytes ?? Number.POSITIVE_INFINITY;
    if (!(max >= 0)) {
      throw new TierError('INVALID_ARGUMENT', `maxBytes must be ≥ 0, got ${options.maxBytes}`, {
        retryable: false,
      });
    }
    this.#maxBytes = max;
  }

  /** The eviction policy (callers may give it hints, e.g. touch order). */
  get policy(): Policy {
    return this.#policy;
  }

  /** Bytes held now. */
  get size(): number {
    return this.#policy.totalBytes;
  }

  async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    const e = this.#get(key, options);
    return e && meta(key, e);
  }

  async read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    const e = this.#get(key, options);
    if (!e) return undefined;
    const r = resolveRange(options?.range, e.bytes.byteLength, key);
    this.#policy.touch(key, this.#clock());
    // A copy the caller owns (Uint8Array's slice copies; Buffer's would not).
    return new Uint8Array(e.bytes.subarray(r.offset, r.offset + r.length));
  }

  async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    const e = this.#get(key, options);
    if (!e) return undefined;
    const r = resolveIntoRange(target, options?.offset, options?.length, e.bytes.byteLength, key);
    target.set(e.bytes.subarray(r.offset, r.offset + r.length));
    this.#policy.touch(key, this.#clock());
    return r.length;
  }

  async readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    const e = this.#get(key, options);
    if (!e) return undefined;
    const r = resolveRange(options?.range, e.bytes.byteLength, key);
    this.#policy.touch(key, this.#clock());
    // The entry's bytes are immutable once stored, so streaming a view is safe
    // even if the key is overwritten meanwhile.
    return streamOf(e.bytes.subarray(r.offset, r.offset + r.length));
  }

  async write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    this.#check(key, options);
    const collected = await collectBytes(data, { size: options?.size, signal: options?.signal, key });
    throwIfAborted(options?.signal, key);
    // Copy: the caller may reuse its buffer; our entries must never change under readers.
    const bytes = collected === data ? new Uint8Array(collected) : collected;
    if (bytes.byteLength > this.#maxBytes) {
      throw new TierError(
        'CAPACITY',
        `object of ${bytes.byteLength} bytes exceeds the memory tier's ${this.#maxBytes} bytes`,
        { key, tier: this.name, retryable: false },
      );
    }
    const replacing = this.#entries.get(key)?.bytes.byteLength ?? 0;
    this.#makeRoom(bytes.byteLength - replacing, key);
    const entry: Entry = {
      bytes,
      etag: `"m${(++this.#version).toString(36)}-${bytes.byteLength.toString(36)}"`,
      lastModified: this.#clock(),
      source: options?.source,
    };
    this.#entries.set(key, entry);
    this.#policy.insert(key, bytes.byteLength, entry.lastModified);
    return meta(key, entry);
  }

  async delete(key: string, options?: OpOptions): Promise<void> {
    this.#check(key, options);
    this.#entries.delete(key);
    this.#policy.remove(key);
  }

  async *list(prefix = '', options?: ListOptions): AsyncIterable<ObjectMeta> {
    assertPrefix(prefix, this.name);
    this.#open();
    const keys = [...this.#entries.keys()].filter((k) => k.startsWith(prefix)).sort();
    for (const key of keys) {
      throwIfAborted(options?.signal);
      const e = this.#entries.get(key);
      if (e) yield meta(key, e);
    }
  }

  pin(key: string): void {
    this.#policy.pin(key);
  }
  unpin(key: string): void {
    this.#policy.unpin(key);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#entries.clear();
  }

  #makeRoom(needed: number, exceptKey: string): void {
    const over = this.#policy.totalBytes + needed - this.#maxBytes;
    if (over <= 0) return;
    // Choose every victim before dropping any: a write that cannot fit must not
    // cost the tier entries it keeps.
    const victims = this.#policy.victims(over).filter((k) => k !== exceptKey);
    const freeable = victims.reduce((n, k) => n + (this.#entries.get(k)?.bytes.byteLength ?? 0), 0);
    if (freeable < over) {
      throw new TierError(
        'CAPACITY',
        `memory tier is full: ${over - freeable} bytes could not be freed (pinned)`,
        {
          key: exceptKey,
          tier: this.name,
          retryable: false,
        },
      );
    }
    for (const victim of victims) {
      this.#entries.delete(victim);
      this.#policy.remove(victim);
    }
  }

  #get(key: string, options: (OpOptions & { ifMatch?: string }) | undefined): Entry | undefined {
    this.#check(key, options);
    const e = this.#entries.get(key);
    if (e && options?.ifMatch !== undefined && options.ifMatch !== e.etag) {
      throw new TierError('CHANGED', `'${key}' changed: ETag ${e.etag}, expected ${options.ifMatch}`, {
        key,
        tier: this.name,
        retryable: false,
      });
    }
    return e;
  }

  #check(key: string, options: OpOptions | undefined): void {
    assertKey(key, this.name);
    this.#open();
    throwIfAborted(options?.signal, key);
  }

  #open(): void {
    if (this.#closed) throw new TierError('CLOSED', `tier '${this.name}' is closed`, { retryable: false });
  }
}

function meta(key: string, e: Entry): ObjectMeta {
  return {
    key,
    size: e.bytes.byteLength,
    etag: e.etag,
    lastModified: e.lastModified,
    ...(e.source ? { source: e.source } : {}),
  };
}

export function createMemoryTier(options?: MemoryTierOptions): MemoryTier {
  return new MemoryTier(options);
}
