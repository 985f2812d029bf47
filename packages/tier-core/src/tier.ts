/**
 * The tier contract, `tierkit/v1`. Everything a tier, a layer or a stack is
 * lives in this file; the rest of tier-core builds on it.
 */
import type { Readable } from 'node:stream';

/** The version of the contract a tier implements. Bumped only on a breaking change. */
export const TIER_SPEC = 'tierkit/v1' as const;
export type TierSpec = typeof TIER_SPEC;

/** What a tier can do. A caller (and the conformance suite) checks these before calling. */
export interface TierCapability {
  /** `write` accepts bytes and streams. */
  readonly write: boolean;
  /** `delete` removes objects. */
  readonly delete: boolean;
  /** `list` enumerates keys by prefix. */
  readonly list: boolean;
  /** Range reads are served without reading the whole object. */
  readonly rangeRead: boolean;
  /** `readInto` fills the caller's buffer without an intermediate copy. */
  readonly readInto: boolean;
  /** Objects carry an ETag that changes when their bytes change. */
  readonly etag: boolean;
  /** The tier keeps the origin's size/ETag given at write time (`WriteOptions.source`). */
  readonly sourceMeta: boolean;
  /** The tier reads into device (GPU) memory. */
  readonly deviceMemory: boolean;
  /** Data survives the process (a directory, an object store), unlike a memory tier. */
  readonly persistent: boolean;
}

/** The identity of an object at its origin, used to validate cached copies. */
export interface SourceMeta {
  readonly size: number;
  readonly etag?: string;
  /** Milliseconds since the epoch. */
  readonly lastModified?: number;
}

/** What `stat`, `write` and `list` report of an object. */
export interface ObjectMeta {
  readonly key: string;
  readonly size: number;
  readonly etag?: string;
  /** Milliseconds since the epoch. */
  readonly lastModified?: number;
  /** For cache entries: the origin object this copy was made from. */
  readonly source?: SourceMeta;
}

/** A byte range of an object. `length` omitted means "to the end". */
export interface ByteRange {
  readonly offset: number;
  readonly length?: number;
}

export interface OpOptions {
  readonly signal?: AbortSignal;
}

export interface ReadOptions extends OpOptions {
  readonly range?: ByteRange;
}

export interface ReadIntoOptions extends OpOptions {
  /** Object offset to start at (default 0). */
  readonly offset?: number;
  /** Bytes to read (default: as many as fit in the target and the object). */
  readonly length?: number;
}

export type WriteData = Uint8Array | AsyncIterable<Uint8Array>;

export interface WriteOptions extends OpOptions {
  /** Expected byte count of a streamed write; a mismatch fails the write and publishes nothing. */
  readonly size?: number;
  /** The origin object this write copies (kept by tiers with `capability.sourceMeta`). */
  readonly source?: SourceMeta;
}

export interface ListOptions extends OpOptions {}

/**
 * A storage tier. A miss is `undefined`, never an exception. Keys are validated
 * (see `keys.ts`) before any I/O; ranges outside the object are `INVALID_RANGE`.
 */
export interface Tier {
  readonly spec: TierSpec;
  readonly name: string;
  readonly capability: TierCapability;

  stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined>;
  /** The whole object, or `options.range` of it. */
  read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined>;
  /**
   * Fills `target` from the object starting at `options.offset`; resolves to the
   * number of bytes written into `target`.
   */
  readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined>;
  /** A stream of the object (or a range), for objects too big to hold at once. */
  readStream(key: string, options?: ReadOptions): Promise<Readable | undefined>;
  /** Publishes an object atomically: readers see the old bytes or the new, never a mix. */
  write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string, options?: OpOptions): Promise<void>;
  /** Objects whose keys start with `prefix` (a string prefix, not only a folder). */
  list(prefix?: string, options?: ListOptions): AsyncIterable<ObjectMeta>;
  close(): Promise<void>;
}

/** A layer wraps a tier and is itself a tier. */
export type Layer = (inner: Tier) => Tier;

/** Capabilities of a tier that can do nothing beyond reading. */
export const READ_ONLY_CAPABILITY: TierCapability = Object.freeze({
  write: false,
  delete: false,
  list: false,
  rangeRead: false,
  readInto: false,
  etag: false,
  sourceMeta: false,
  deviceMemory: false,
  persistent: false,
});
