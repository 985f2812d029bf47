/**
 * A directory as a tier. A complete object is a plain file at its key's path
 * under the root; everything else tierkit keeps lives in `<root>/.tierkit/`.
 * See README.md for the layout, the multi-process rules and NFS notes.
 *
 * The class holds the tier's operations and its read path; what they call
 * lives by concern: the byte budget in capacity.ts, publishing (and what a
 * partial copy asks of its tier) in publishing.ts, eviction and re-walks in
 * eviction.ts, pins and purges in pins-purges.ts, what is found at open in
 * root-scan.ts, partial copies in partial.ts / partial-dir.ts, locks in lock.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type BigIntStats, promises as fsp, lstatSync } from 'node:fs';
import { constants } from 'node:os';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { Readable as NodeReadable } from 'node:stream';
import { type CachedRead, cachedRead } from '@tierkit/native';
import { LruPolicy } from '@tierkit/policy-lru';
import { isShared, type ReadPool, sharedBytes, sharedPool } from '@tierkit/pool';
import {
  abortError,
  assertKey,
  assertPrefix,
  checkSize,
  fromSystemError,
  isTierError,
  type ListOptions,
  matchesSource,
  type ObjectMeta,
  type OpOptions,
  type PartialEntry,
  type PartialOptions,
  type Policy,
  type ReadIntoOptions,
  type ReadOptions,
  resolveIntoRange,
  resolveRange,
  type SourceMeta,
  TIER_SPEC,
  type Tier,
  type TierCapability,
  TierError,
  throwIfAborted,
  type WriteData,
  type WriteOptions,
} from '@tierkit/tier-core';
import { Budget, type BudgetHost, NO_SPACE } from './capacity.js';
import { evictOne, reindex, unlinkObject } from './eviction.js';
import { type CachedFile, DescriptorCache } from './fd-cache.js';
import { DIRECT_FS_TYPES, LOCAL_FS_TYPES } from './fs-types.js';
import { UseJournal } from './journal.js';
import { type FsLock, LockFiles, type LockOptions } from './lock.js';
import {
  type DescriptorCheck,
  type FsTierOptions,
  invalid,
  optionsFromUrl,
  type Resolved,
  resolveOptions,
} from './options.js';
import { OWNER_TAG } from './owner.js';
import { CLAIM_PREFIX, cleanPartialLeftovers, FsPartial, type PartialHost } from './partial.js';
import { partialOfEntry, scanPartials } from './partial-dir.js';
import { isReservedKey, keyHash, META_DIR, RootPaths } from './paths.js';
import { loadPins, purgeIdle, purgeToBytes, removePin, writePin } from './pins-purges.js';
import { type PublishedPartial, partialHost, placeFile } from './publishing.js';
import { cleanTemps, indexPartials, mkdirTelling, realRoot } from './root-scan.js';
import { type BlockSums, etagOf, type FsChecksum, identity, type Sidecar, sidecarMatch } from './sidecar.js';
import type { TierParts } from './tier-parts.js';
import { checkedStream, StreamSums, sumsOfBytes, sumsOfFile, Verifier, type VerifyStats } from './verify.js';
import { type WalkedFile, walkFiles } from './walk.js';

export type { DescriptorCheck, FsTierOptions } from './options.js';
export { parseSize } from './options.js';
export type { FsChecksum } from './sidecar.js';

export interface FillLockOptions extends LockOptions {}

const CAPABILITY: TierCapability = Object.freeze({
  write: true,
  delete: true,
  list: true,
  rangeRead: true,
  readInto: true,
  etag: true,
  sourceMeta: true,
  deviceMemory: false,
  persistent: true,
});
/** A read-only directory (an origin): no writes, deletes or partial copies. */
const READ_ONLY_CAPABILITY: TierCapability = Object.freeze({ ...CAPABILITY, write: false, delete: false });

const MiB = 1024 * 1024;
/** A partial copy nobody has added a block to for this long is dropped at open. */
const PARTIAL_MAX_AGE_MS = 7 * 24 * 3600 * 1000;

/** What the tier knows of one entry, for operators (`tierkit ls`, `stat`, `verify`). */
export interface FsEntryInfo {
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly lastModified: number;
  /** The origin's identity this copy was made from, when known. */
  readonly source?: SourceMeta;
  readonly checksum?: FsChecksum;
  /**
   * `ok`: the sidecar describes this file; `none`: there is no sidecar (a file
   * another program put there, or a write without `source`); `stale`: the
   * sidecar names another version of the file, so the file was changed outside
   * tierkit (its source and checksum are not reported).
   */
  readonly metadata: 'ok' | 'none' | 'stale';
  /**
   * The file is a copy of the one the sidecar describes (same size and mtime,
   * another inode: `cp -a`, tar, a Dockerfile COPY); its bytes are checked
   * against the recorded checksum on first use.
   */
  readonly copied?: boolean;
  /** Last use known to this process's index (ms since the epoch). */
  readonly lastUsed?: number;
  readonly pinned: boolean;
}

/** A partial copy, for operators (`FsTier.partials`, `tierkit ls`). */
export interface FsPartialInfo {
  readonly key: string;
  /** The object's size at the origin. */
  readonly size: number;
  /** Bytes of the blocks present: what the budget counts for it. */
  readonly bytesPresent: number;
  readonly blockSize: number;
  /** When a block was last added (ms since the epoch). */
  readonly lastModified: number;
  readonly pinned: boolean;
}

let tmpSeq = 0;

export class FsTier implements Tier {
  readonly spec = TIER_SPEC;
  readonly capability: TierCapability;
  readonly name: string;
  /** Resolves when the index is built (the tier opens itself on construction; every op waits for it). */
  readonly ready: Promise<void>;

  readonly #o: Resolved;
  readonly #policy: Policy;
  readonly #clock: () => number;
  readonly #onEvict?: (key: string, size: number) => void;
  readonly #poolOption: boolean | ReadPool;
  readonly #fds: DescriptorCache | undefined;
  readonly #instance = randomBytes(4).toString('hex');
  #paths!: RootPaths;
  #locks!: LockFiles;
  /** Last-use times on disk; none for a read-only root. */
  #journal: UseJournal | undefined;
  #opened = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #pins = new Set<string>();
  readonly #sources = new Map<string, { id: string; source?: SourceMeta }>();
  /** Copies being checked against their recorded checksum (see #adoptCopy), by key. */
  readonly #adopting = new Map<string, { id: string; done: Promise<SourceMeta | undefined> }>();
  readonly #metaDirs = new Set<string>();
  /** Partial copies' blocks this process wrote or checked: reopening need not check them again. */
  readonly #verifiedBlocks: PartialHost['verified'] = new Map();
  /** How cached descriptors are checked (`descriptorCheck`, resolved at open). */
  #check: DescriptorCheck = 'offload';
  /** Whether partial copies write blocks with O_DIRECT (`directFill`, resolved at open). */
  #directFill = false;
  /** Reads up to this long try the page cache inline first (`inlineReadMax`, resolved at open). */
  #inlineMax = 0;
  #inlineBytes = 0;
  readonly #budget: Budget;
  readonly #verifier: Verifier;
  /** Entries evicted in this process, and their bytes. */
  readonly #evicted = { count: 0, bytes: 0 };
  /** What the modules (publishing, eviction, pins and purges, the open-time scan) work on. */
  readonly #parts: TierParts;

  constructor(options: FsTierOptions) {
    if (!options || typeof options.root !== 'string' || options.root === '') {
      throw invalid('FsTier needs a `root` directory');
    }
    this.name = options.name ?? 'fs';
    this.#o = resolveOptions(options);
    this.capability = this.#o.readOnly ? READ_ONLY_CAPABILITY : CAPABILITY;
    this.#clock = options.clock ?? Date.now;
    this.#policy = options.policy ?? new LruPolicy({ clock: this.#clock });
    this.#onEvict = options.onEvict;
    this.#poolOption = options.pool ?? true;
    this.#fds =
      this.#o.openFiles > 0 ? new DescriptorCache(this.#o.openFiles, this.#o.openFileIdleMs) : undefined;
    this.#budget = new Budget(this.#budgetHost(), this.#o.maxBytes, this.#o.minFreeRatio);
    this.#parts = this.#makeParts();
    this.#verifier = new Verifier(this.#o.verify, {
      tier: this.name,
      readOnly: this.#o.readOnly,
      concurrency: this.#o.readConcurrency,
      sidecarPath: (key) => this.#sidecarPath(key),
      writeSidecar: (body) => this.#writeSidecarBody(body),
      drop: (key) => this.delete(key),
    });
    this.ready = this.#open();
    // Errors surface through the ops (and `ready`); never as an unhandled rejection.
    this.ready.catch(() => {});
  }

  /** Waits for the index to be built; the same as awaiting `ready`. */
  async open(): Promise<this> {
    await this.ready;
    return this;
  }

  /** The root's real path (after the tier is ready). */
  get root(): string {
    return this.#paths?.real ?? this.#o.root;
  }
  /** Bytes of the entries this process's index knows of: objects and partial copies' blocks. */
  get usedBytes(): number {
    return this.#policy.totalBytes;
  }
  /** Entries of the index: objects and partial copies. */
  get count(): number {
    return this.#policy.count;
  }
  /** Entries removed by eviction (capacity or idle purge) in this process. */
  get evictions(): number {
    return this.#evicted.count;
  }
  get evictedBytes(): number {
    return this.#evicted.bytes;
  }
  /** How cached descriptors are checked (`descriptorCheck`, resolved from the filesystem once the tier is ready). */
  get descriptorCheck(): DescriptorCheck {
    return this.#check;
  }
  /** Whether block fills write with O_DIRECT (`directFill`, resolved from the filesystem once the tier is ready). */
  get directFill(): boolean {
    return this.#directFill;
  }
  /** Reads up to this long copy cached bytes on the calling thread first (`inlineReadMax`; 0: off). */
  get inlineReadMax(): number {
    return this.#inlineMax;
  }
  /** Bytes this tier copied from the page cache on the calling thread (see `inlineReadMax`). */
  get inlineReadBytes(): number {
    return this.#inlineBytes;
  }
  /** Descriptors kept open for hot reads right now. */
  /** The `verify` mode, and what reads checked (see verify.ts). */
  get verify(): VerifyStats & { readonly mode: string; readonly implementation: string } {
    const v = this.#verifier;
    return { mode: v.mode, implementation: v.implementation, ...v.stats };
  }

  get openDescriptors(): number {
    return this.#fds?.size ?? 0;
  }
  /** The policy, for inspection (last-use order, pins). */
  get policy(): Policy {
    return this.#policy;
  }

  // ---- reads -------------------------------------------------------------

  async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    await this.#enter(key, options);
    return this.#withFile(key, 'stat', (_fh, st) => this.#meta(key, st));
  }

  async read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    await this.#enter(key, options);
    return this.#readVia(key, options?.ifMatch, options?.signal, 'read', (size) => {
      const r = resolveRange(options?.range, size, key);
      return { offset: r.offset, view: this.#alloc(r.length) };
    });
  }

  async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    await this.#enter(key, options);
    const view = await this.#readVia(key, options?.ifMatch, options?.signal, 'readInto', (size) => {
      const r = resolveIntoRange(target, options?.offset, options?.length, size, key);
      return { offset: r.offset, view: target.subarray(0, r.length) };
    });
    return view?.byteLength;
  }

  /** The pool, when one is configured (the shared one is started here, on first use). */
  get workerPool(): ReadPool | undefined {
    const p = this.#poolOption;
    if (p === false) return undefined;
    if (p === true) return sharedPool();
    return p.closed ? undefined : p;
  }

  /** Memory for a read of `length` bytes: shared when the pool will fill it. */
  #alloc(length: number): Uint8Array {
    return length >= this.#o.poolReadThreshold && this.#poolOption !== false
      ? sharedBytes(length)
      : new Uint8Array(length);
  }

  /**
   * The read path of read and readInto: a cached descriptor when one is open and
   * the key's path still names its file, else open, stat, read, and keep the
   * descriptor. `plan` resolves the range against the size and names the destination.
   */
  async #readVia(
    key: string,
    ifMatch: string | undefined,
    signal: AbortSignal | undefined,
    op: string,
    plan: (size: number) => { offset: number; view: Uint8Array },
  ): Promise<Uint8Array | undefined> {
    const cache = this.#fds;
    const hit = cache?.take(key);
    if (hit) {
      try {
        const out = await this.#readHit(key, hit, ifMatch, signal, op, plan);
        if (out) return out;
      } finally {
        cache!.release(hit);
      }
    }
    let fh: fsp.FileHandle | undefined;
    let acquired = false;
    let kept = false;
    try {
      fh = await this.#paths.openRead(key);
      if (!fh) return undefined;
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) return undefined;
      const etag = etagOf(st);
      if (ifMatch !== undefined && etag !== ifMatch) throw this.#changed(key, etag, ifMatch);
      const size = Number(st.size);
      const { offset, view } = plan(size);
      this.#discover(key, size);
      this.#policy.acquire(key);
      acquired = true;
      await this.#readChecked(key, fh, st, view, offset, signal);
      this.#touch(key);
      kept = cache?.put(key, fh, st, etag) ?? false;
      return view;
    } catch (err) {
      throw this.#error(err, key, op);
    } finally {
      if (acquired) this.#policy.release(key);
      if (!kept) await fh?.close().catch(() => {});
    }
  }

  /** A read through a cached descriptor, checked by an lstat run alongside; undefined: take the slow path. */
  async #readHit(
    key: string,
    f: CachedFile,
    ifMatch: string | undefined,
    signal: AbortSignal | undefined,
    op: string,
    plan: (size: number) => { offset: number; view: Uint8Array },
  ): Promise<Uint8Array | undefined> {
    // Another ETag or a bad range may only mean the file was replaced: the slow path decides.
    if (ifMatch !== undefined && f.etag !== ifMatch) return undefined;
    let planned: { offset: number; view: Uint8Array };
    try {
      planned = plan(f.size);
    } catch {
      return undefined;
    }
    this.#discover(key, f.size);
    this.#policy.acquire(key);
    try {
      if (this.#check !== 'offload') {
        if (this.#check === 'inline') {
          // Checked before the read: the read then sees the file the path named at that moment.
          let st: BigIntStats | undefined;
          try {
            st = lstatSync(this.#paths.file(key), { bigint: true, throwIfNoEntry: false });
          } catch {
            st = undefined;
          }
          if (!st || !DescriptorCache.same(f, st)) {
            this.#fds!.drop(key, f);
            return undefined;
          }
        }
        try {
          await this.#readChecked(key, f.fh, f, planned.view, planned.offset, signal);
        } catch (err) {
          throw this.#error(err, key, op);
        }
        this.#touch(key);
        return planned.view;
      }
      const [st, read] = await Promise.allSettled([
        fsp.lstat(this.#paths.file(key), { bigint: true }),
        this.#readChecked(key, f.fh, f, planned.view, planned.offset, signal),
      ]);
      if (st.status === 'rejected' || !DescriptorCache.same(f, st.value)) {
        this.#fds!.drop(key, f);
        return undefined;
      }
      if (read.status === 'rejected') throw this.#error(read.reason, key, op);
      this.#touch(key);
      return planned.view;
    } finally {
      this.#policy.release(key);
    }
  }

  #changed(key: string, etag: string, ifMatch: string): TierError {
    return new TierError('CHANGED', `'${key}' changed: ETag ${etag}, expected ${ifMatch}`, {
      key,
      tier: this.name,
      retryable: false,
      details: { etag, ifMatch },
    });
  }

  async readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    await this.#enter(key, options);
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await this.#paths.openRead(key);
      if (!fh) return undefined;
      const size = await this.#checkedSize(fh, key, options?.ifMatch);
      if (size === undefined) {
        await fh.close();
        return undefined;
      }
      const r = resolveRange(options?.range, size, key);
      this.#discover(key, size);
      this.#touch(key);
      if (r.length === 0) {
        await fh.close();
        return NodeReadable.from([]);
      }
      // The entry stays in use (never an eviction victim) until the stream closes.
      this.#policy.acquire(key);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.#policy.release(key);
      };
      const stream =
        this.#verifier.mode === 'never'
          ? fh.createReadStream({
              start: r.offset,
              end: r.offset + r.length - 1,
              highWaterMark: MiB,
              autoClose: true,
            })
          : await this.#checkedStream(key, fh, r.offset, r.length);
      fh = undefined;
      stream.once('close', release);
      const signal = options?.signal;
      if (signal) {
        const onAbort = () => stream.destroy(abortError(signal, key));
        signal.addEventListener('abort', onAbort, { once: true });
        stream.once('close', () => signal.removeEventListener('abort', onAbort));
      }
      return stream;
    } catch (err) {
      await fh?.close().catch(() => {});
      throw this.#error(err, key, 'readStream');
    }
  }

  // ---- writes ------------------------------------------------------------

  async write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    this.#assertWritable('write', key);
    await this.#enter(key, options);
    const signal = options?.signal;
    if (data instanceof Uint8Array) checkSize(data.byteLength, options?.size, key);
    const known = data instanceof Uint8Array ? data.byteLength : options?.size;
    const tooBig = this.#budget.refuse(key, known);
    if (tooBig) throw tooBig;
    const tmp = this.#tmpPath('t');
    let fh: fsp.FileHandle | undefined;
    let published = false;
    try {
      fh = await fsp.open(tmp, 'wx', this.#o.fileMode);
      let size = 0;
      // The block sums verified reads check are taken from the bytes as they are written.
      let sums: BlockSums;
      if (data instanceof Uint8Array) {
        const summing = sumsOfBytes(data);
        summing.catch(() => {});
        await writeFully(fh, data);
        sums = await summing;
        size = data.byteLength;
      } else {
        const summer = new StreamSums();
        for await (const chunk of data) {
          throwIfAborted(signal, key);
          if (!(chunk instanceof Uint8Array)) {
            throw new TierError('INVALID_ARGUMENT', 'write streams must yield Uint8Array chunks', {
              key,
              tier: this.name,
              retryable: false,
            });
          }
          size += chunk.byteLength;
          if (options?.size !== undefined && size > options.size) checkSize(size, options.size, key);
          const grown = this.#budget.refuse(key, size);
          if (grown) throw grown;
          summer.update(chunk);
          await writeFully(fh, chunk);
        }
        checkSize(size, options?.size, key);
        sums = summer.finish();
      }
      if (this.#o.fsync) await fh.sync();
      const st = await fh.stat({ bigint: true });
      await fh.close();
      fh = undefined;
      await this.#publishFile(key, tmp, st, options?.source, signal, undefined, sums);
      published = true;
      return this.#meta(key, st, options?.source);
    } catch (err) {
      throw this.#error(err, key, 'write');
    } finally {
      if (fh) await fh.close().catch(() => {});
      if (!published) await fsp.unlink(tmp).catch(() => {});
    }
  }

  /**
   * Moves a complete temp file into place as `key` (atomically, within capacity)
   * and records it. The file is ours until this resolves; then it is the object.
   */
  async #publishFile(
    key: string,
    tmp: string,
    st: BigIntStats,
    source: SourceMeta | undefined,
    signal: AbortSignal | undefined,
    partial?: PublishedPartial,
    sums?: BlockSums,
  ): Promise<void> {
    throwIfAborted(signal, key);
    const size = Number(st.size);
    await this.#paths.ensureParents(key, this.#o.dirMode);
    const id = identity(st);
    // The sidecar goes first and names the data file's identity: a crash before
    // the rename leaves a sidecar that matches nothing and is ignored. It carries the
    // blocks' CRC32Cs that verified reads check (verify.ts), taken as the bytes were
    // written; read back from the file only by a caller that never had them.
    if (!sums) {
      this.#verifier.countReadBack(size);
      sums = await sumsOfFile(tmp, size);
    }
    await this.#writeSidecar(key, id, source, sums);
    await placeFile(this.#parts, key, tmp, size, id, source, signal, partial);
  }

  // ---- partial copies (block-granular fills) ----------------------------

  /**
   * Opens the partial copy of `key` made from `source` (see partial.ts): the
   * stack fills it block by block and publishes it as a normal entry.
   */
  async openPartial(key: string, source: SourceMeta, options: PartialOptions): Promise<PartialEntry> {
    this.#assertWritable('openPartial', key);
    await this.#enter(key, options);
    const tooBig = this.#budget.refuse(key, source.size);
    if (tooBig) throw tooBig;
    try {
      return await FsPartial.open(this.#partialHost, key, source, options.blockSize);
    } catch (err) {
      throw this.#error(err, key, 'openPartial');
    }
  }

  get #partialHost(): PartialHost {
    return partialHost(this.#parts, {
      locks: this.#locks,
      pool: this.workerPool,
      direct: this.#directFill,
      published: async (key, source) => {
        const meta = await this.stat(key);
        return meta && matchesSource(meta, source) ? meta : undefined;
      },
      readBack: (bytes) => this.#verifier.countReadBack(bytes),
      publishFile: async (key, file, source, partial, sums) => {
        const st = await fsp.stat(file, { bigint: true });
        await this.#publishFile(key, file, st, source, undefined, partial, sums);
        return this.#meta(key, st, source);
      },
    });
  }

  async delete(key: string, options?: OpOptions): Promise<void> {
    this.#assertWritable('delete', key);
    await this.#enter(key, options);
    try {
      // A missing or linked parent means nothing of ours is there: deleting is a no-op.
      if (await this.#paths.parentsAreReal(key)) {
        if (this.#budget.limited) {
          await this.#budget.section(async () => {
            this.#budget.bytes -= await unlinkObject(this.#paths.file(key));
          });
        } else {
          await unlinkObject(this.#paths.file(key));
        }
      }
      await fsp.unlink(this.#sidecarPath(key)).catch(() => {});
      this.#forget(key);
    } catch (err) {
      throw this.#error(err, key, 'delete');
    }
  }

  async *list(prefix = '', options?: ListOptions): AsyncIterable<ObjectMeta> {
    assertPrefix(prefix, this.name);
    if (prefix !== '' && isReservedKey(prefix)) {
      throw new TierError(
        'INVALID_KEY',
        `invalid prefix ${JSON.stringify(prefix)}: '${META_DIR}' is reserved`,
        {
          tier: this.name,
          retryable: false,
        },
      );
    }
    this.#assertOpen();
    throwIfAborted(options?.signal);
    await this.#whenReady();
    // Walk only the folder the prefix is in; a prefix is a string prefix, not only a folder.
    const slash = prefix.lastIndexOf('/');
    const dir = slash < 0 ? '' : prefix.slice(0, slash);
    if (dir !== '' && !(await this.#paths.parentsAreReal(`${dir}/x`))) return;
    let files: WalkedFile<BigIntStats>[];
    try {
      files = await walkFiles(this.#paths.real, dir, options?.signal, true);
    } catch (err) {
      throw this.#error(err, undefined, 'list');
    }
    const keys = files.filter((f) => f.key.startsWith(prefix)).sort((a, b) => (a.key < b.key ? -1 : 1));
    for (const f of keys) {
      throwIfAborted(options?.signal);
      yield await this.#meta(f.key, f.st, undefined, false);
    }
  }

  // ---- pins, purge, locks ------------------------------------------------

  /**
   * Marks `key` used at `at` (default now), as a read would: it moves in the
   * eviction order, and the time is journaled, so the order survives a restart
   * (KvStore's eviction hint uses this). Unknown keys are ignored.
   */
  touch(key: string, at: number = this.#clock()): void {
    this.#assertKey(key);
    if (!this.#policy.get(key)) return;
    this.#policy.touch(key, at);
    this.#journal?.record(key, at);
  }

  /** Keeps `key` from eviction, across restarts and for every process sharing the root. */
  async pin(key: string): Promise<void> {
    this.#assertWritable('pin', key);
    await this.#enter(key, undefined);
    try {
      await writePin(this.#parts, key);
    } catch (err) {
      throw this.#error(err, key, 'pin');
    }
  }

  async unpin(key: string): Promise<void> {
    this.#assertWritable('unpin', key);
    await this.#enter(key, undefined);
    try {
      await removePin(this.#parts, key);
    } catch (err) {
      throw this.#error(err, key, 'unpin');
    }
  }

  isPinned(key: string): boolean {
    return this.#pins.has(key);
  }

  /**
   * Evicts least recently used entries — objects and partial copies — until
   * they take at most `maxBytes` (never pinned or in-use ones). Returns the
   * keys removed (a partial copy as `<key> (partial)`).
   */
  async purgeToBytes(maxBytes: number, options?: OpOptions): Promise<string[]> {
    this.#assertWritable('purgeToBytes');
    if (!(Number.isFinite(maxBytes) && maxBytes >= 0))
      throw invalid(`purgeToBytes: bad byte budget ${maxBytes}`);
    this.#assertOpen();
    throwIfAborted(options?.signal);
    await this.#whenReady();
    return purgeToBytes(this.#parts, maxBytes, options?.signal);
  }

  /**
   * The partial copies under `prefix` (objects filled only in part: range
   * reads, an interrupted warm), by key: the bytes present — what the budget
   * counts — and when a block was last added. `list` yields complete objects only.
   */
  async partials(prefix = '', options?: OpOptions): Promise<FsPartialInfo[]> {
    assertPrefix(prefix, this.name);
    this.#assertOpen();
    throwIfAborted(options?.signal);
    await this.#whenReady();
    if (this.#o.readOnly) return [];
    const found = await scanPartials(this.#paths.meta('partial'));
    return found
      .filter((p) => p.info.key.startsWith(prefix))
      .map((p) => ({
        key: p.info.key,
        size: p.info.source.size,
        bytesPresent: p.bytes,
        blockSize: p.info.blockSize,
        lastModified: p.mtimeMs,
        pinned: this.#pins.has(p.info.key),
      }))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** The entry's size, identity, origin, stored checksum, last use and pin; undefined on a miss. */
  async entryInfo(key: string, options?: OpOptions): Promise<FsEntryInfo | undefined> {
    await this.#enter(key, options);
    return this.#withFile(key, 'entryInfo', async (_fh, st) => {
      const side = await this.#readSidecar(key);
      const id = identity(st);
      const match = sidecarMatch(side, st);
      // A copy this process already found not to match its checksum is stale, not ok.
      const refused =
        match === 'copy' && this.#sources.get(key)?.id === id && !this.#sources.get(key)?.source;
      const metadata = side === undefined ? 'none' : match === 'other' || refused ? 'stale' : 'ok';
      const ok = metadata === 'ok' ? side : undefined;
      return {
        key,
        size: Number(st.size),
        etag: etagOf(st),
        lastModified: Number(st.mtimeMs),
        ...(ok?.source ? { source: ok.source } : {}),
        ...(ok?.checksum ? { checksum: ok.checksum } : {}),
        metadata,
        ...(metadata === 'ok' && match === 'copy' ? { copied: true } : {}),
        lastUsed: this.#policy.get(key)?.lastUsed,
        pinned: this.#pins.has(key),
      };
    });
  }

  /**
   * Hashes the entry's bytes (sha256) without counting as a use; resolves to the
   * checksum and the ETag of the version hashed, or undefined on a miss.
   */
  async computeChecksum(
    key: string,
    options?: OpOptions,
  ): Promise<{ checksum: FsChecksum; etag: string; size: number } | undefined> {
    await this.#enter(key, options);
    return this.#withFile(key, 'computeChecksum', async (fh, st) => {
      // In use while hashed: never an eviction victim meanwhile.
      this.#policy.acquire(key);
      try {
        const checksum = await this.#hash(fh, st, key, options?.signal);
        return { checksum, etag: etagOf(st), size: Number(st.size) };
      } finally {
        this.#policy.release(key);
      }
    });
  }

  /** sha256 of the open file `st` describes, on the pool when there is one. */
  async #hash(
    fh: fsp.FileHandle,
    st: BigIntStats,
    key: string,
    signal: AbortSignal | undefined,
  ): Promise<FsChecksum> {
    const pool = this.workerPool;
    if (pool) {
      // Hashing a model file takes seconds of CPU: a worker does it, the main thread keeps serving.
      const { hex, size } = await pool.sha256(fh.fd);
      throwIfAborted(signal, key);
      if (size !== Number(st.size)) {
        throw new TierError('CHANGED', `'${key}' changed size while it was hashed`, { key, retryable: true });
      }
      return { algorithm: 'sha256', value: hex };
    }
    const hash = createHash('sha256');
    const buf = new Uint8Array(Math.min(4 * MiB, Math.max(1, Number(st.size))));
    for (let pos = 0; ; ) {
      throwIfAborted(signal, key);
      const { bytesRead } = await fh.read(buf, 0, buf.byteLength, pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    return { algorithm: 'sha256', value: hash.digest('hex') };
  }

  /**
   * Stores `checksum` in the entry's sidecar if the file is still the version
   * `expectedEtag` names (false otherwise, nothing stored). The checksum is tied
   * to the file's identity: a later write or an edit outside tierkit orphans it.
   */
  async setChecksum(
    key: string,
    checksum: FsChecksum,
    expectedEtag: string,
    options?: OpOptions,
  ): Promise<boolean> {
    this.#assertWritable('setChecksum', key);
    await this.#enter(key, options);
    if (checksum?.algorithm !== 'sha256' || !/^[0-9a-f]{64}$/.test(checksum.value ?? '')) {
      throw invalid(`setChecksum '${key}': expected { algorithm: 'sha256', value: <64 hex> }`);
    }
    const stored = await this.#withFile(key, 'setChecksum', async (_fh, st) => {
      if (etagOf(st) !== expectedEtag) return false;
      const id = identity(st);
      const side = await this.#readSidecar(key);
      const match = sidecarMatch(side, st);
      // A copy keeps its origin version (and block sums) when the fresh hash proves it holds the recorded bytes.
      const kept =
        match === 'same' || (match === 'copy' && side!.checksum?.value === checksum.value) ? side : undefined;
      const source = kept?.source;
      const blocks = kept?.blocks;
      await this.#writeSidecarBody({
        key,
        id,
        ...(source ? { source } : {}),
        ...(blocks ? { blocks } : {}),
        checksum,
      });
      this.#sources.set(key, { id, source });
      return true;
    });
    return stored ?? false;
  }

  /** Evicts entries (objects and partial copies) not used for `idleMs`, never pinned or in-use ones. Returns the keys removed. */
  async purgeIdle(idleMs: number, options?: OpOptions): Promise<string[]> {
    this.#assertWritable('purgeIdle');
    this.#assertOpen();
    throwIfAborted(options?.signal);
    await this.#whenReady();
    return purgeIdle(this.#parts, idleMs, options?.signal);
  }

  /**
   * Takes the cross-process fill lock of `key` (a lock file in `.tierkit/locks`
   * with a lease). Only one holder per key at a time across every process that
   * shares the root. Release it when done; `lock.signal` aborts if it is lost.
   */
  async acquireLock(key: string, options?: FillLockOptions): Promise<FsLock> {
    this.#assertWritable('acquireLock', key);
    await this.#enter(key, options);
    try {
      return await this.#locks.acquire(`k-${keyHash(key)}`, options);
    } catch (err) {
      throw this.#error(err, key, 'lock');
    }
  }

  /** One attempt at `key`'s fill lock: undefined when another holder has it. */
  async tryLock(key: string): Promise<FsLock | undefined> {
    this.#assertWritable('tryLock', key);
    await this.#enter(key, undefined);
    try {
      return await this.#locks.tryAcquire(`k-${keyHash(key)}`);
    } catch (err) {
      throw this.#error(err, key, 'lock');
    }
  }

  /** Runs `fn` holding `key`'s fill lock; `fn` gets the lock (its signal aborts if the lock is lost). */
  async withFillLock<T>(
    key: string,
    fn: (lock: FsLock) => Promise<T>,
    options?: FillLockOptions,
  ): Promise<T> {
    const lock = await this.acquireLock(key, options);
    try {
      return await fn(lock);
    } finally {
      await lock.release();
    }
  }

  /**
   * Re-walks the root: adds objects other processes or programs put there,
   * forgets vanished ones and (with `maxBytes`) resets the shared byte count.
   */
  async rescan(options?: OpOptions): Promise<void> {
    this.#assertOpen();
    throwIfAborted(options?.signal);
    await this.#whenReady();
    // A read-only root keeps no index: every stat and list looks at the disk.
    if (this.#o.readOnly) return;
    if (this.#budget.limited) await this.#budget.section(() => this.#budget.recount());
    else await reindex(this.#parts);
  }

  /** Writes pending last-use times to the journal. Runs every `flushIntervalMs` and on close. */
  async flush(): Promise<void> {
    if (!this.#opened || !this.#journal) return;
    await this.#journal.flush(() => this.#useEntries(), Math.max(10_000, this.#policy.count * 2));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#fds?.close();
    try {
      await this.ready;
    } catch {
      return;
    }
    await this.flush().catch(() => {});
  }

  // ---- internals ---------------------------------------------------------

  /**
   * Opens `key`'s regular file (no link followed), stats it and runs `fn`;
   * undefined on a miss. Errors become TierErrors naming `op`; the file is closed after.
   */
  async #withFile<T>(
    key: string,
    op: string,
    fn: (fh: fsp.FileHandle, st: BigIntStats) => Promise<T>,
  ): Promise<T | undefined> {
    let fh: fsp.FileHandle | undefined;
    try {
      fh = await this.#paths.openRead(key);
      if (!fh) return undefined;
      const st = await fh.stat({ bigint: true });
      if (!st.isFile()) return undefined;
      this.#discover(key, Number(st.size));
      return await fn(fh, st);
    } catch (err) {
      throw this.#error(err, key, op);
    } finally {
      await fh?.close().catch(() => {});
    }
  }

  async #open(): Promise<void> {
    const o = this.#o;
    try {
      if (o.create) await fsp.mkdir(o.root, { recursive: true, mode: o.dirMode });
      const real = await realRoot(o, this.name);
      this.#paths = new RootPaths(real, this.name);
      const fsType = (await fsp.statfs(real)).type;
      this.#check = o.descriptorCheck ?? (LOCAL_FS_TYPES.has(fsType) ? 'inline' : 'offload');
      this.#directFill = !o.readOnly && (o.directFill ?? DIRECT_FS_TYPES.has(fsType));
      this.#inlineMax = pageCacheRead() ? (o.inlineReadMax ?? (LOCAL_FS_TYPES.has(fsType) ? 4 * MiB : 0)) : 0;
      if (o.readOnly) {
        // An origin: nothing to index or keep; every operation looks at the disk when asked.
        this.#opened = true;
        return;
      }
      const metaRoot = this.#paths.meta();
      await mkdirTelling(metaRoot, o.dirMode);
      if (!(await fsp.lstat(metaRoot)).isDirectory()) {
        throw new TierError('UNAVAILABLE', `${metaRoot} must be a real directory, not a link`, {
          tier: this.name,
          retryable: false,
        });
      }
      for (const d of ['tmp', 'locks', 'meta', 'pins', 'uses', 'partial']) {
        await fsp.mkdir(this.#paths.meta(d), { recursive: true, mode: o.dirMode });
      }
      this.#locks = new LockFiles({
        dir: this.#paths.meta('locks'),
        tmpDir: this.#paths.meta('tmp'),
        leaseMs: o.lockLeaseMs,
        pollMs: o.lockPollMs,
        instance: this.#instance,
        tier: this.name,
      });
      this.#journal = new UseJournal(this.#paths.meta('uses'), this.#paths.meta('tmp'), this.#instance);
      await cleanTemps(this.#parts);
      // Block claims of killed processes (a full disk, which cannot take a lock's temp file, leaves them for later).
      await this.#locks.sweep(CLAIM_PREFIX).catch(() => {});
      await cleanPartialLeftovers(this.#paths.meta('partial'), o.staleTempMs, PARTIAL_MAX_AGE_MS);
      await loadPins(this.#parts);
      const files = await walkFiles(real, '');
      const { uses, merged } = await this.#journal.load();
      const entries = files.map((f) => ({
        key: f.key,
        size: Number(f.st.size),
        lastUsed: uses.get(f.key) ?? Number(f.st.mtimeMs),
      }));
      // Oldest first, so an insertion-ordered LRU ends up in last-use order; the
      // journal's order breaks ties within a millisecond (a KV eviction hint makes many).
      const rank = new Map<string, number>();
      for (const k of uses.keys()) rank.set(k, rank.size);
      entries.sort((a, b) => a.lastUsed - b.lastUsed || (rank.get(a.key) ?? -1) - (rank.get(b.key) ?? -1));
      for (const e of entries) {
        this.#policy.insert(e.key, e.size, e.lastUsed);
        if (this.#pins.has(e.key)) this.#policy.pin(e.key);
      }
      await this.#journal.compact(
        entries.map((e) => [e.key, e.lastUsed] as [string, number]),
        merged,
      );
      const partialBytes = await indexPartials(this.#parts);
      if (o.maxBytes !== undefined) {
        // The first limited opener sets the shared count from its walk: while the
        // count is missing no limited process can have published anything.
        await this.#budget
          .section(async () => {}, files.reduce((n, f) => n + Number(f.st.size), 0) + partialBytes)
          .catch((err: unknown) => {
            // A full disk cannot take the capacity lock file: open anyway and serve what is here;
            // the next publish takes the section (and fails typed while the disk stays full).
            if (!isNoSpace(err)) throw err;
          });
      }
      this.#opened = true;
      if (o.flushIntervalMs > 0) {
        this.#timer = setInterval(() => void this.flush().catch(() => {}), o.flushIntervalMs);
        this.#timer.unref();
      }
    } catch (err) {
      throw this.#error(err, undefined, 'open');
    }
  }

  async #whenReady(): Promise<void> {
    if (!this.#opened) await this.ready;
  }

  /** Checks that run before any I/O: key, closed, aborted; then waits for the index. */
  async #enter(key: string, options: OpOptions | undefined): Promise<void> {
    this.#assertKey(key);
    this.#assertOpen();
    throwIfAborted(options?.signal, key);
    if (!this.#opened) await this.ready;
  }

  /** A valid key that does not name anything inside `.tierkit/`. */
  #assertKey(key: string): void {
    assertKey(key, this.name);
    if (isReservedKey(key)) {
      throw new TierError(
        'INVALID_KEY',
        `invalid key ${JSON.stringify(key)}: '${META_DIR}' is reserved for tierkit`,
        {
          tier: this.name,
          retryable: false,
        },
      );
    }
  }

  #assertWritable(op: string, key?: string): void {
    if (!this.#o.readOnly) return;
    throw new TierError(
      'UNSUPPORTED',
      `${op}: tier '${this.name}' is read-only (readOnly: true); nothing is written under ${this.#o.root}`,
      { key, tier: this.name, retryable: false },
    );
  }

  #assertOpen(): void {
    if (this.#closed) throw new TierError('CLOSED', `tier '${this.name}' is closed`, { retryable: false });
  }

  #tmpPath(kind: string): string {
    return this.#paths.meta('tmp', `${kind}-${process.pid}-${this.#instance}-${++tmpSeq}@${OWNER_TAG}`);
  }

  #sidecarPath(key: string): string {
    const h = keyHash(key);
    return this.#paths.meta('meta', h.slice(0, 2), `${h}.json`);
  }

  #pinPath(key: string): string {
    return this.#paths.meta('pins', keyHash(key));
  }

  async #writeSidecar(
    key: string,
    id: string,
    source: SourceMeta | undefined,
    blocks?: BlockSums,
  ): Promise<void> {
    const path = this.#sidecarPath(key);
    if (source === undefined && blocks === undefined) {
      // A stale sidecar must not outlive the data it described.
      await fsp.unlink(path).catch(() => {});
      return;
    }
    await this.#writeSidecarBody({ key, id, ...(source ? { source } : {}), ...(blocks ? { blocks } : {}) });
  }

  async #writeSidecarBody(body: Sidecar): Promise<void> {
    const path = this.#sidecarPath(body.key);
    const dir = dirname(path);
    if (!this.#metaDirs.has(dir)) {
      await fsp.mkdir(dir, { recursive: true, mode: this.#o.dirMode });
      this.#metaDirs.add(dir);
    }
    const tmp = this.#tmpPath('m');
    try {
      const fh = await fsp.open(tmp, 'wx');
      try {
        await fh.writeFile(JSON.stringify(body));
        if (this.#o.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      await fsp.rename(tmp, path);
    } catch (err) {
      // (A full disk can refuse the bytes after the name was made.)
      await fsp.unlink(tmp).catch(() => {});
      throw err;
    }
  }

  async #readSidecar(key: string): Promise<Sidecar | undefined> {
    try {
      const body = JSON.parse(await fsp.readFile(this.#sidecarPath(key), 'utf8')) as Sidecar;
      return body.key === key && typeof body.id === 'string' ? body : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The origin version the file `st` at `key` was made from, from its sidecar.
   * A copy of the recorded file (see matchIdentity) is taken on once its bytes
   * match the recorded checksum (`checkCopy`; list skips that and reports the
   * recorded source); the sidecar then names the copy, so it is hashed once.
   */
  async #sourceFor(key: string, st: BigIntStats, checkCopy = true): Promise<SourceMeta | undefined> {
    if (this.#o.readOnly) return undefined;
    const id = identity(st);
    const cached = this.#sources.get(key);
    if (cached?.id === id) return cached.source;
    const side = await this.#readSidecar(key);
    const match = sidecarMatch(side, st);
    if (match === 'copy' && !checkCopy) return side!.source;
    let source: SourceMeta | undefined;
    if (match === 'same') source = side!.source;
    else if (match === 'copy') source = await this.#adoptCopy(key, side!, st);
    this.#sources.set(key, { id, source });
    return source;
  }

  /** A copy's first use: its bytes checked against the recorded checksum, then its sidecar rewritten for it. */
  #adoptCopy(key: string, side: Sidecar, st: BigIntStats): Promise<SourceMeta | undefined> {
    const id = identity(st);
    const running = this.#adopting.get(key);
    if (running?.id === id) return running.done;
    const done = (async () => {
      const hashed = await this.#withFile(key, 'checkCopy', async (fh, now) =>
        identity(now) === id ? this.#hash(fh, now, key, undefined) : undefined,
      );
      if (hashed?.value !== side.checksum?.value) return undefined;
      const body: Sidecar = { ...side, id };
      // Best effort: on a read-only copy the check is simply redone by the next process.
      await this.#writeSidecarBody(body).catch(() => {});
      return side.source;
    })();
    this.#adopting.set(key, { id, done });
    return done.finally(() => {
      if (this.#adopting.get(key)?.done === done) this.#adopting.delete(key);
    });
  }

  async #meta(key: string, st: BigIntStats, source?: SourceMeta, checkCopy = true): Promise<ObjectMeta> {
    const src = source ?? (await this.#sourceFor(key, st, checkCopy));
    return {
      key,
      size: Number(st.size),
      etag: etagOf(st),
      lastModified: Number(st.mtimeMs),
      ...(src ? { source: src } : {}),
    };
  }

  /** An object this process had not seen (another process wrote it): start tracking it. */
  #discover(key: string, size: number): void {
    const e = this.#policy.get(key);
    if (e && e.size === size) return;
    this.#policy.insert(key, size, e?.lastUsed ?? this.#clock());
    if (this.#pins.has(key)) this.#policy.pin(key);
  }

  /** Size of the open regular file (undefined if it is not one); CHANGED when `ifMatch` names another version. */
  async #checkedSize(
    fh: fsp.FileHandle,
    key: string,
    ifMatch: string | undefined,
  ): Promise<number | undefined> {
    if (ifMatch === undefined) {
      const st = await fh.stat();
      return st.isFile() ? st.size : undefined;
    }
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) return undefined;
    const etag = etagOf(st);
    if (etag !== ifMatch) {
      throw new TierError('CHANGED', `'${key}' changed: ETag ${etag}, expected ${ifMatch}`, {
        key,
        tier: this.name,
        retryable: false,
        details: { etag, ifMatch },
      });
    }
    return Number(st.size);
  }

  #touch(key: string): void {
    const now = this.#clock();
    this.#policy.touch(key, now);
    this.#journal?.record(key, now);
  }

  #forget(key: string): void {
    this.#fds?.invalidate(key);
    this.#policy.remove(key);
    this.#sources.delete(key);
    this.#journal?.forget(key);
  }

  *#useEntries(): Iterable<[string, number]> {
    // Partial copies' last use is their blocks file's time, not the journal's.
    for (const e of this.#policy.entries()) if (!partialOfEntry(e.key)) yield [e.key, e.lastUsed];
  }

  /** A stream of the range whose blocks are checked as the `verify` mode says; it closes `fh`. */
  async #checkedStream(key: string, fh: fsp.FileHandle, offset: number, length: number): Promise<Readable> {
    const st = await fh.stat({ bigint: true });
    const file = fh;
    return checkedStream(
      (into, position) =>
        this.#readChecked(key, file, st, into, position, undefined).catch((err) => {
          throw this.#error(err, key, 'readStream');
        }),
      offset,
      length,
      () => file.close(),
    );
  }

  /** `#readAt`, checked against the entry's block sums as the `verify` mode says. */
  #readChecked(
    key: string,
    fh: fsp.FileHandle,
    st: {
      readonly size: bigint | number;
      readonly mtimeNs: bigint;
      readonly ino: bigint;
      readonly sizeBig?: bigint;
    },
    view: Uint8Array,
    offset: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    if (this.#verifier.mode === 'never') return this.#readAt(fh, view, offset, signal, key);
    const size = st.sizeBig ?? BigInt(st.size);
    return this.#verifier.read(
      key,
      { fd: fh.fd, size: Number(size), version: { size, mtimeNs: st.mtimeNs, ino: st.ino } },
      view,
      offset,
      (into, position) => this.#readAt(fh, into, position, signal, key),
      signal,
    );
  }

  async #readAt(
    fh: fsp.FileHandle,
    target: Uint8Array,
    position: number,
    signal: AbortSignal | undefined,
    key: string,
  ): Promise<void> {
    const length = target.byteLength;
    if (length >= this.#o.poolReadThreshold && isShared(target)) {
      const pool = this.workerPool;
      if (pool) {
        // Every thread of the pool reads its pieces straight into the caller's shared memory.
        if ((await pool.readInto(fh.fd, target, position, signal)) !== length) {
          throw new TierError('CHANGED', `'${key}' got shorter while it was being read`, {
            key,
            retryable: true,
          });
        }
        return;
      }
    }
    if (length <= this.#inlineMax) {
      const got = this.#readCached(fh.fd, target, position);
      if (got === length) return;
      // Past the cached run (or the end of a file that shrank): the thread pool decides.
      await readFully(fh, got > 0 ? target.subarray(got) : target, position + got, key);
      return;
    }
    if (length < this.#o.parallelReadThreshold) {
      await readFully(fh, target, position, key);
      return;
    }
    // Disjoint subarrays of the caller's buffer, filled by parallel positioned reads.
    const chunk = this.#o.readChunkSize;
    const parts = Math.ceil(length / chunk);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < parts; i = next++) {
        throwIfAborted(signal, key);
        const start = i * chunk;
        await readFully(fh, target.subarray(start, Math.min(start + chunk, length)), position + start, key);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#o.readConcurrency, parts) }, worker));
  }

  /** Bytes copied from the page cache on this thread (see `inlineReadMax`); 0 when none were cached. */
  #readCached(fd: number, target: Uint8Array, position: number): number {
    if (!inlineTurn.take(target.byteLength)) return 0;
    try {
      const got = pageCacheRead()!(fd, target, position);
      if (got <= 0) return 0;
      this.#inlineBytes += got;
      inlineTurn.spent(got);
      return got;
    } catch (err) {
      // This filesystem cannot (tmpfs, NFS, FUSE): stop trying. Other errors resurface on the async read.
      if (INLINE_REFUSED.has((err as { errno?: number }).errno ?? 0)) this.#inlineMax = 0;
      return 0;
    }
  }

  // ---- capacity (the budget itself is in capacity.ts) --------------------

  #budgetHost(): BudgetHost {
    const tier = this;
    return {
      name: this.name,
      policy: this.#policy,
      get locks() {
        return tier.#locks;
      },
      get usageFile() {
        return tier.#paths.meta('usage.json');
      },
      get root() {
        return tier.#paths.real;
      },
      tmpPath: (kind) => this.#tmpPath(kind),
      reindex: () => reindex(this.#parts),
      evict: (key) => evictOne(this.#parts, key),
    };
  }

  #makeParts(): TierParts {
    const tier = this;
    return {
      name: this.name,
      o: this.#o,
      policy: this.#policy,
      clock: this.#clock,
      pins: this.#pins,
      sources: this.#sources,
      verifiedBlocks: this.#verifiedBlocks,
      budget: this.#budget,
      get paths() {
        return tier.#paths;
      },
      get journal() {
        return tier.#journal;
      },
      fds: this.#fds,
      evicted: this.#evicted,
      onEvict: this.#onEvict,
      tmpPath: (kind) => this.#tmpPath(kind),
      pinPath: (key) => this.#pinPath(key),
      sidecarPath: (key) => this.#sidecarPath(key),
      readSidecar: (key) => this.#readSidecar(key),
      forget: (key) => this.#forget(key),
    };
  }

  #error(err: unknown, key: string | undefined, op: string): TierError {
    if (isTierError(err)) return err;
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code === 'ABORT_ERR') return abortError(undefined, key);
    const where = key === undefined ? '' : ` '${key}'`;
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
      const path = (err as NodeJS.ErrnoException).path ?? this.root;
      return new TierError(
        'UNAVAILABLE',
        `${op}${where}: permission denied on ${path} (${code}) — ` +
          (this.#o.readOnly
            ? `give this process read access to ${this.root}`
            : code === 'EROFS'
              ? `${this.root} is on a read-only filesystem: open it with readOnly: true to serve it as an origin, ` +
                'or point the cache at a writable directory'
              : `give this process read and write access to ${this.root} and its .tierkit folder, or point ` +
                'the tier at a directory it owns'),
        { cause: err, key, tier: this.name, retryable: false, details: { errno: code, path } },
      );
    }
    if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') {
      return new TierError(
        'UNAVAILABLE',
        `${op}${where}: the path clashes with an existing file or folder under ${this.root} ` +
          "(a filesystem cannot hold both 'a' and 'a/b')",
        { cause: err, key, tier: this.name, retryable: false, details: { errno: code } },
      );
    }
    return fromSystemError(err, { key, tier: this.name, op });
  }
}

export function createFsTier(options: FsTierOptions): FsTier {
  return new FsTier(options);
}

/**
 * Builds an FsTier from `file:///var/cache/models?maxBytes=200GiB&minFreeRatio=0.1`.
 * Query parameters are the serializable options; `extra` (e.g. `onEvict`, `policy`) wins over them.
 */
export function fsTierFromUrl(url: string | URL, extra: Partial<FsTierOptions> = {}): FsTier {
  return new FsTier({ ...optionsFromUrl(url), ...extra });
}

function isNoSpace(err: unknown): boolean {
  const e = (isTierError(err) ? err.cause : err) as NodeJS.ErrnoException | undefined;
  return NO_SPACE.has(e?.code ?? '');
}

const { errno } = constants;
/** errnos of a page-cache read the filesystem does not support. */
const INLINE_REFUSED = new Set([errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL]);

/**
 * Inline reads finish without giving the event loop a turn, so a loop of awaited
 * hits would starve timers and I/O. Per turn of the event loop (process-wide),
 * at most INLINE_BYTES_PER_TURN are copied inline; past that a read goes to the
 * thread pool, and the loop turns while it waits.
 */
const INLINE_BYTES_PER_TURN = 8 * MiB;
const inlineTurn = {
  bytes: 0,
  armed: false,
  take(length: number): boolean {
    return this.bytes === 0 || this.bytes + length <= INLINE_BYTES_PER_TURN;
  },
  spent(n: number): void {
    this.bytes += n;
    if (this.armed) return;
    this.armed = true;
    setImmediate(() => {
      this.bytes = 0;
      this.armed = false;
    }).unref();
  },
};

let pageCacheReader: CachedRead | undefined | null = null;
/** @tierkit/native's page-cache read, looked up once per process; undefined where the addon is not built. */
function pageCacheRead(): CachedRead | undefined {
  if (pageCacheReader === null) pageCacheReader = cachedRead();
  return pageCacheReader;
}

async function writeFully(fh: fsp.FileHandle, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.byteLength) {
    const { bytesWritten } = await fh.write(data, at, data.byteLength - at);
    at += bytesWritten;
  }
}

/** Positioned reads until `target` is full; the file is never truncated in place, so a short read means it changed. */
async function readFully(
  fh: fsp.FileHandle,
  target: Uint8Array,
  position: number,
  key: string,
): Promise<void> {
  let at = 0;
  while (at < target.byteLength) {
    const { bytesRead } = await fh.read(target, at, target.byteLength - at, position + at);
    if (bytesRead === 0) {
      throw new TierError('CHANGED', `'${key}' got shorter while it was being read`, {
        key,
        retryable: true,
      });
    }
    at += bytesRead;
  }
}
