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

/** Digest algorithms an origin may state for an object (S3's checksums and MD5 ETags). */
export type DigestAlgorithm = 'md5' | 'sha1' | 'sha256' | 'crc32' | 'crc32c' | 'crc64nvme';

/**
 * A digest of an object's bytes: stated by its origin (S3's stored checksum,
 * an MD5 ETag), or computed by a fill as the bytes arrived.
 */
export interface ObjectDigest {
  readonly algorithm: DigestAlgorithm;
  /** Lower-case hex (a CRC big-endian, as S3 encodes it before base64). */
  readonly value: string;
  /**
   * Set when `value` is the digest of the parts' digests (a multipart ETag,
   * an S3 COMPOSITE checksum): the number of parts. Checkable only with `partSize`.
   */
  readonly parts?: number;
  /** Bytes in every part but the last (which may be shorter). */
  readonly partSize?: number;
  /**
   * Where an origin's digest comes from: a checksum it stores (`checksum`), or
   * an ETag taken as an MD5 (`etag`) — the latter is a convention of S3 and most
   * compatible stores, not a promise (see tier-s3's `etagDigests`).
   */
  readonly from?: 'checksum' | 'etag';
}

/** The identity of an object at its origin, used to validate cached copies. */
export interface SourceMeta {
  readonly size: number;
  readonly etag?: string;
  /** Milliseconds since the epoch. */
  readonly lastModified?: number;
  /**
   * What the origin states about the object's bytes. A fill checks every byte
   * it publishes against these; a cached copy whose source has none was
   * published unverified (the origin offered nothing to check against).
   */
  readonly digests?: readonly ObjectDigest[];
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
  /** Digests of the object's bytes: an origin's stated ones, or those a fill computed. */
  readonly digests?: readonly ObjectDigest[];
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
  /**
   * Read only if the object's ETag is still this one; otherwise fail with
   * `CHANGED`. Tiers with `capability.etag` honour it; it is how a fill that
   * reads an object in parts refuses to stitch two versions together.
   */
  readonly ifMatch?: string;
  /**
   * The caller checks the bytes of a whole-object read against a digest the
   * origin states (a block fill does, through its digest feed), so a tier may
   * skip its own end-to-end check of them (tier-s3's ETag MD5) rather than
   * hash every byte twice. Default false: a tier's own checks run.
   */
  readonly callerVerifies?: boolean;
}

export interface ReadIntoOptions extends OpOptions {
  /** As in `ReadOptions`. */
  readonly ifMatch?: string;
  /** As in `ReadOptions`. */
  readonly callerVerifies?: boolean;
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

/**
 * A cache tier that can hold an object in part, block by block (tier-fs does).
 * A stack fills it from the origin with ranged reads, serves readers as blocks
 * land, and publishes the object once every block is there.
 */
export interface BlockCache {
  /** Opens, or creates, the partial copy of `key` made from `source`; a partial of another source is discarded. */
  openPartial(key: string, source: SourceMeta, options: PartialOptions): Promise<PartialEntry>;
}

export interface PartialOptions extends OpOptions {
  readonly blockSize: number;
}

/** A partial copy of one object. Shared by the processes filling it. */
export interface PartialEntry {
  readonly key: string;
  readonly size: number;
  readonly blockSize: number;
  readonly blockCount: number;
  /** Whether a block is present, as far as this handle knows (see `refresh`). */
  has(block: number): boolean;
  /** Rereads which blocks are present (other processes fill too). */
  refresh(): Promise<void>;
  /**
   * Claims a missing block for this process to fetch: true when it is ours,
   * false while another live process holds it. A dead holder's claim is taken over.
   */
  claim(block: number): Promise<boolean>;
  release(block: number): Promise<void>;
  /** Stores a block (exactly its length) and records it present. */
  writeBlock(block: number, bytes: Uint8Array): Promise<void>;
  /**
   * Memory to assemble a block of `length` bytes in before `writeBlock`
   * (e.g. shared memory an entry writes from on worker threads). Optional:
   * fills use plain memory without it.
   */
  blockBuffer?(length: number): Uint8Array;
  /** Reads `target.byteLength` bytes at `offset`; every block they touch must be present. */
  readInto(target: Uint8Array, offset: number): Promise<void>;
  /** Publishes the complete object as a normal entry (atomic; idempotent across processes). */
  publish(): Promise<ObjectMeta>;
  /** Drops the partial copy. */
  discard(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A tier that can complete a digest it stated in part: a per-part digest
 * (`parts` set) needs the part size, which an origin may know (S3: a HEAD of
 * part 1). Undefined when it cannot be learned; the digest is then not checked.
 */
export interface DigestSource {
  resolveDigest(
    key: string,
    digest: ObjectDigest,
    options: OpOptions & { readonly size: number; readonly etag?: string },
  ): Promise<ObjectDigest | undefined>;
}

export function isDigestSource(tier: Tier): tier is Tier & DigestSource {
  return typeof (tier as Partial<DigestSource>).resolveDigest === 'function';
}

export function isBlockCache(tier: Tier): tier is Tier & BlockCache {
  return typeof (tier as Partial<BlockCache>).openPartial === 'function';
}
