/**
 * Partial copies of objects, filled block by block (tier-core's BlockCache).
 *
 * `.tierkit/partial/<keyhash>/` holds:
 * - `info.json`: key, the source (size, ETag) the blocks come from, block size,
 *   and the partial's random id;
 * - `data.<id>`: a sparse file of the object's size, blocks written at their offsets;
 * - `blocks.<id>`: 8 bytes per block, a CRC-32 of the block then a marker, written
 *   after the block's data reached the disk (synced; on NFS, the server). A block
 *   counts as present only with the marker; a partial reopened by a new process
 *   has its blocks checked against their CRCs, so a block torn by a crash or power
 *   loss is fetched again, never served; and a block another process marked while
 *   this one had the partial open is checked against its CRC before it is first
 *   served, since an NFS client's cached pages can predate the block.
 * - `sums.<id>`: the CRC32Cs the blocks publish with, taken as they were written
 *   (see partial-sums.ts).
 *
 * Processes share a partial: each claims a block (a lock file with a lease)
 * before fetching it, so each block is fetched once across processes. The
 * directory is created under a private name and renamed into place, so two
 * processes opening the same new partial agree on one.
 *
 * Another process may retire the partial at `<keyhash>/` (publish it, or replace
 * it for a new source) and a third create the next one there at any moment. The
 * id in the file names is what keeps that safe without locks: a name opened from
 * an info.json belongs to that partial or to none, so a process never pairs one
 * partial's markers with another's bytes, nor publishes another partial's data.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, promises as fsp, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate as setImmediateP } from 'node:timers/promises';
import { crc32 } from 'node:zlib';
import { type Crc32c, crc32c, loadAddon } from '@tierkit/native';
import { isShared, type ReadPool, sharedBytes } from '@tierkit/pool';
import { type ObjectMeta, type PartialEntry, type SourceMeta, TierError } from '@tierkit/tier-core';
import type { FsLock, LockFiles } from './lock.js';
import { exists, type Info, MARKER, partialEntryName, privateName, readInfo, SLOT } from './partial-dir.js';
import { SumsLayout } from './partial-sums.js';
import { keyHash } from './paths.js';
import type { BlockSums } from './sidecar.js';
import { encodeSums } from './verify.js';

export { cleanPartialLeftovers } from './partial-dir.js';

/** The names of block claims in the lock folder: `p-<key hash>-<block>`. */
export const CLAIM_PREFIX = 'p-';

/** What a partial needs from the tier that owns it. */
export interface PartialHost {
  /** `.tierkit/partial` */
  readonly dir: string;
  readonly fsync: boolean;
  readonly fileMode: number;
  readonly locks: LockFiles;
  readonly tier: string;
  /** Partial dir → the blocks this process wrote or checked in the partial with that id (so a reopen need not reread them). */
  readonly verified: Map<string, KnownBlocks>;
  /** The worker pool that checks blocks' CRCs at reopen, if any. */
  readonly pool?: ReadPool;
  /** Write blocks with O_DIRECT where the filesystem takes it (see FsTierOptions.directFill). */
  readonly direct: boolean;
  /** The entry of `key` if it is a complete copy of `source` (published by another process). */
  published(key: string, source: SourceMeta): Promise<ObjectMeta | undefined>;
  /**
   * Publishes `file` (a private hard link to the data of the partial at `dir`
   * with `id`) as `key` and retires that partial; takes ownership of `file`.
   */
  publish(
    key: string,
    file: string,
    source: SourceMeta,
    dir: string,
    id: string,
    sums: BlockSums,
  ): Promise<ObjectMeta>;
  /** Bytes of blocks read back at publish because their sums were not known (see partial-sums.ts). */
  readBack?(bytes: number): void;
  /** Removes the partial at `dir` if it is still the one with `id` (undefined: one without info.json). */
  retire(dir: string, id: string | undefined): Promise<void>;
  /**
   * Counts `bytes` about to be written into the partial (`entry`, its name in
   * the policy) in the budget, evicting to make room first: CAPACITY when
   * nothing can go. Nothing is written past the budget.
   */
  reserve(key: string, entry: string, bytes: number): Promise<void>;
  /** Takes back a reservation whose block was not written. */
  unreserve(entry: string, bytes: number): Promise<void>;
  /** A handle opened the partial holding `bytes`: it is in use (no eviction victim) until `closed`. */
  opened(entry: string, bytes: number): void;
  closed(entry: string): void;
  /** The partial was read from: it moves in the eviction order. */
  used(entry: string): void;
}

/** What this process knows of one partial's blocks, shared by its handles. */
export interface KnownBlocks {
  readonly id: string;
  /** Per block: ABSENT, TRUSTED (written or CRC-checked here) or MARKED (another process's marker, not yet checked). */
  readonly present: Uint8Array;
  /** Per block: the CRC-32 its marker recorded (known for every block present). */
  readonly crcs: Uint32Array;
  /** Per unit (partial-sums.ts): the CRC32C the entry publishes with, valid where `summed` is set for its block. */
  readonly sums: Uint32Array;
  /** Per block: its unit sums in `sums` are known (taken at its write, its check, or a sealed record). */
  readonly summed: Uint8Array;
  /** Per block: a CRC whose marker failed our check (the block is fetched again, not trusted on that marker). */
  readonly failed: Map<number, number>;
}

/** A block written, waiting for the sync after which its marker is written. */
interface Unmarked {
  readonly block: number;
  readonly crc: number;
  /** The block's unit CRC32Cs (its record in `sums.<id>`, written before the marker). */
  readonly sums: Uint32Array;
  /** Written through the page cache (not O_DIRECT): needs the data file synced. */
  readonly buffered: boolean;
  resolve(): void;
  reject(err: unknown): void;
}

const ABSENT = 0;
const TRUSTED = 1;
const MARKED = 2;

function sameSource(a: SourceMeta, b: SourceMeta): boolean {
  return a.size === b.size && a.etag === b.etag;
}

export class FsPartial implements PartialEntry {
  readonly key: string;
  readonly size: number;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly #host: PartialHost;
  readonly #dir: string;
  readonly #id: string;
  readonly #source: SourceMeta;
  readonly #data: fsp.FileHandle;
  readonly #blocks: fsp.FileHandle;
  /** `sums.<id>`; undefined for a partial made by a tierkit that kept none (its sums come from its bytes). */
  readonly #sums: fsp.FileHandle | undefined;
  readonly #layout: SumsLayout;
  readonly #crc: Crc32c = crc32c();
  /** The data file opened with O_DIRECT (closed with the entry). */
  #direct: fsp.FileHandle | undefined;
  /** The kernel refused a direct write here: blocks go through the page cache from then on. */
  #directRefused = false;
  /** Buffers this entry handed out whose memory it knows to be aligned: buffer → aligned byte offset. */
  readonly #aligned = new WeakMap<ArrayBufferLike, number>();
  readonly #present: Uint8Array;
  readonly #known: KnownBlocks;
  /**
   * Blocks whose bytes are written here but not yet marked: one sync of the data covers
   * every block queued meanwhile (a group commit), then their markers are written.
   */
  #unmarked: Unmarked[] = [];
  #flushing: Promise<void> | undefined;
  /** Markers written since the blocks file was last synced (synced before a claim is released). */
  #markersDirty = false;
  readonly #claims = new Map<number, FsLock>();
  /** The partial's name in the tier's policy (an entry of the budget). */
  readonly #entry: string;
  /** This handle holds the entry in use (see PartialHost.opened). */
  #inUse = false;
  #closed = false;
  /** Blocks this handle wrote with O_DIRECT (diagnostics and tests). */
  directWrites = 0;

  private constructor(
    host: PartialHost,
    dir: string,
    info: Info,
    data: fsp.FileHandle,
    blocks: fsp.FileHandle,
    sums: fsp.FileHandle | undefined,
  ) {
    this.#host = host;
    this.#dir = dir;
    this.#entry = partialEntryName(keyHash(info.key), info.id);
    this.#id = info.id;
    this.key = info.key;
    this.#source = info.source;
    this.size = info.source.size;
    this.blockSize = info.blockSize;
    this.blockCount = Math.ceil(this.size / this.blockSize);
    this.#data = data;
    this.#blocks = blocks;
    this.#sums = sums;
    this.#layout = new SumsLayout(this.blockSize);
    const known = host.verified.get(dir);
    this.#known =
      known?.id === info.id && known.present.length === this.blockCount
        ? known
        : {
            id: info.id,
            present: new Uint8Array(this.blockCount),
            crcs: new Uint32Array(this.blockCount),
            sums: new Uint32Array(Math.ceil(this.size / this.#layout.unit)),
            summed: new Uint8Array(this.blockCount),
            failed: new Map(),
          };
    this.#present = this.#known.present;
    host.verified.set(dir, this.#known);
  }

  /** Opens the partial copy of `key` from `source`, creating it, or replacing one of another source. */
  static async open(
    host: PartialHost,
    key: string,
    source: SourceMeta,
    blockSize: number,
  ): Promise<FsPartial> {
    if (!Number.isSafeInteger(blockSize) || blockSize < 1) {
      throw new TierError('INVALID_ARGUMENT', `blockSize must be a positive integer, got ${blockSize}`, {
        key,
        tier: host.tier,
        retryable: false,
      });
    }
    const dir = join(host.dir, keyHash(key));
    for (let attempt = 0; ; attempt++) {
      const info = await readInfo(dir);
      if (info && info.key === key && sameSource(info.source, source) && info.blockSize === blockSize) {
        const opened = await FsPartial.#openExisting(host, dir, info);
        if (opened) return opened;
      } else if (info) {
        // Another source or block size: move it aside, then build ours.
        await host.retire(dir, info.id);
      } else if (await exists(dir)) {
        // No readable info.json: a leftover of another format or a damaged disk, unless
        // a new partial has just been renamed into place. Judged again before it goes.
        const again = await readInfo(dir);
        if (!again) await host.retire(dir, undefined);
        else continue;
      }
      if (attempt >= 4) {
        throw new TierError('UNAVAILABLE', `could not open the partial copy of '${key}' (it kept changing)`, {
          key,
          tier: host.tier,
        });
      }
      await FsPartial.#create(host, dir, { id: randomBytes(8).toString('hex'), key, source, blockSize });
    }
  }

  static async #openExisting(host: PartialHost, dir: string, info: Info): Promise<FsPartial | undefined> {
    let data: fsp.FileHandle | undefined;
    let blocks: fsp.FileHandle | undefined;
    let sums: fsp.FileHandle | undefined;
    try {
      data = await fsp.open(join(dir, `data.${info.id}`), 'r+');
      blocks = await fsp.open(join(dir, `blocks.${info.id}`), 'r+');
      // Absent in a partial an older tierkit made: its blocks' sums are then taken at publish.
      sums = await fsp.open(join(dir, `sums.${info.id}`), 'r+').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
    } catch (err) {
      await data?.close();
      await blocks?.close();
      // Retired since its info.json was read: look again.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const p = new FsPartial(host, dir, info, data, blocks, sums);
    if (host.direct) p.#direct = await openDirect(join(dir, `data.${info.id}`));
    try {
      await p.#verify();
    } catch (err) {
      await p.close();
      throw err;
    }
    p.#inUse = true;
    host.opened(p.#entry, p.#presentBytes());
    return p;
  }

  static async #create(host: PartialHost, dir: string, info: Info): Promise<void> {
    const tmp = join(host.dir, privateName('new'));
    // Not recursive first: a recursive mkdir reports any failure as ENOENT, and a full
    // disk (ENOSPC) must be told as such, so the stack serves the read from the origin.
    await fsp.mkdir(tmp).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
      return fsp.mkdir(tmp, { recursive: true });
    });
    try {
      const data = await fsp.open(join(tmp, `data.${info.id}`), 'wx', host.fileMode);
      await data.truncate(info.source.size);
      await data.close();
      const blocks = await fsp.open(join(tmp, `blocks.${info.id}`), 'wx');
      await blocks.truncate(Math.ceil(info.source.size / info.blockSize) * SLOT);
      await blocks.close();
      const sums = await fsp.open(join(tmp, `sums.${info.id}`), 'wx');
      await sums.truncate(
        Math.ceil(info.source.size / info.blockSize) * new SumsLayout(info.blockSize).record,
      );
      await sums.close();
      await fsp.writeFile(join(tmp, 'info.json'), JSON.stringify(info));
      await fsp.rename(tmp, dir);
    } catch (err) {
      await fsp.rm(tmp, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      // Someone else's partial got there first: use theirs.
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
  }

  has(block: number): boolean {
    return this.#present[block] !== ABSENT;
  }

  /**
   * Memory for blocks about to be written: shared when a worker pool writes
   * them (no copy to the worker), and aligned for O_DIRECT when blocks go
   * straight to the disk.
   */
  blockBuffer(length: number): Uint8Array {
    const shared = this.#host.pool !== undefined && !this.#host.pool.closed;
    if (!this.#direct || this.#directRefused || this.blockSize % DIRECT_ALIGN !== 0) {
      return shared ? sharedBytes(length) : Buffer.allocUnsafe(length);
    }
    const whole = shared ? sharedBytes(length + DIRECT_ALIGN) : Buffer.allocUnsafeSlow(length + DIRECT_ALIGN);
    const at = this.#alignmentOf(whole);
    if (at === undefined) return whole.subarray(0, length);
    const view = whole.subarray(at, at + length);
    this.#aligned.set(view.buffer, view.byteOffset);
    return view;
  }

  /**
   * Where in `buf` memory is aligned for O_DIRECT: from its address, which
   * @tierkit/native tells. Without the addon, JavaScript cannot see addresses,
   * but the kernel refuses a direct write from misaligned memory with EINVAL:
   * the first offset it accepts (for a scratch file of our own) is aligned.
   * That probe writes synchronously, up to 512 times, so it is the fallback
   * only. (A direct read would not do: reading a hole checks nothing.)
   */
  #alignmentOf(buf: Uint8Array): number | undefined {
    const address = addressOf(buf);
    if (address !== undefined) return (DIRECT_ALIGN - Number(address % BigInt(DIRECT_ALIGN))) % DIRECT_ALIGN;
    const scratch = join(this.#host.dir, privateName('new'));
    let fd: number | undefined;
    try {
      fd = openSync(
        scratch,
        constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT,
        0o600,
      );
      for (let at = 0; at < DIRECT_ALIGN; at += 8) {
        try {
          writeSync(fd, buf, at, DIRECT_ALIGN, 0);
          return at;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EINVAL') return undefined;
        }
      }
      return undefined;
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) closeSync(fd);
      rmSync(scratch, { force: true });
    }
  }

  /** Whether `bytes` at `offset` can go to the disk with O_DIRECT. */
  #directOk(bytes: Uint8Array, offset: number): boolean {
    const base = this.#aligned.get(bytes.buffer);
    return (
      base !== undefined &&
      (bytes.byteOffset - base) % DIRECT_ALIGN === 0 &&
      bytes.byteLength % DIRECT_ALIGN === 0 &&
      offset % DIRECT_ALIGN === 0
    );
  }

  /**
   * Picks up blocks other processes have marked. They are served only after
   * their bytes match the marker's CRC (readInto checks them once): on an
   * NFS mount this client's page cache may still hold what the file had
   * before another node wrote the block.
   */
  async refresh(): Promise<void> {
    const slots = await this.#readSlots(true);
    const { crcs, failed } = this.#known;
    for (let b = 0; b < this.blockCount; b++) {
      if (this.#present[b] !== ABSENT || slots.readUInt32LE(b * SLOT + 4) !== MARKER) continue;
      const crc = slots.readUInt32LE(b * SLOT);
      if (failed.get(b) === crc) continue;
      crcs[b] = crc;
      this.#present[b] = MARKED;
    }
  }

  async claim(block: number): Promise<boolean> {
    if (this.#claims.has(block)) return true;
    if (this.#closed) return false;
    let lock: FsLock | undefined;
    try {
      lock = await this.#host.locks.tryAcquire(`${CLAIM_PREFIX}${keyHash(this.key).slice(0, 32)}-${block}`);
    } catch (err) {
      // A full disk cannot take the claim's lock file either.
      throw this.#writeError(err, block);
    }
    if (!lock) return false;
    if (this.#closed) {
      // Closed while we waited: a claim kept now would never be released.
      await lock.release();
      return false;
    }
    this.#claims.set(block, lock);
    return true;
  }

  async release(block: number): Promise<void> {
    const lock = this.#claims.get(block);
    this.#claims.delete(block);
    // Whoever claims the block next must see its marker: on NFS our writes sit in this
    // client until a sync (or close), and a next holder on another node would fetch it again.
    if (lock && this.#markersDirty && this.#host.fsync) {
      this.#markersDirty = false;
      await this.#sums?.datasync().catch(() => {});
      await this.#blocks.datasync().catch(() => {});
    }
    await lock?.release();
  }

  async writeBlock(block: number, bytes: Uint8Array): Promise<void> {
    const offset = block * this.blockSize;
    const expected = Math.min(this.blockSize, this.size - offset);
    if (!(block >= 0 && block < this.blockCount) || bytes.byteLength !== expected) {
      throw new TierError('INVALID_ARGUMENT', `block ${block} of '${this.key}' must be ${expected} bytes`, {
        key: this.key,
        tier: this.#host.tier,
        retryable: false,
      });
    }
    let crc: number;
    let sums: Uint32Array;
    const direct =
      this.#direct && !this.#directRefused && this.#directOk(bytes, offset) ? this.#direct : undefined;
    let buffered = !direct;
    await this.#reserve(block, bytes.byteLength);
    // The publish sums are taken from the bytes in hand, alongside the write (the addon: on
    // libuv's threads while a pool worker writes), never by reading the block back.
    const summing = this.#crc.blocksAsync(bytes, this.#layout.unit);
    summing.catch(() => {});
    try {
      try {
        crc = await this.#writeData(direct ?? this.#data, bytes, offset);
        if (direct) this.directWrites++;
      } catch (err) {
        // (From a worker the error may come back as a message only.)
        if (!direct || !/EINVAL/.test(errText(err))) throw err;
        // The filesystem took O_DIRECT at open but not this write: buffered from now on. The
        // handle stays open until close(): other blocks' writes may still be using it.
        this.#directRefused = true;
        buffered = true;
        crc = await this.#writeData(this.#data, bytes, offset);
      }
      sums = await summing;
    } catch (err) {
      // Nothing (or a torn block that no marker will ever cover) was written: the reservation goes.
      await this.#host.unreserve(this.#entry, bytes.byteLength).catch(() => {});
      throw this.#writeError(err, block);
    }
    await new Promise<void>((resolve, reject) => {
      this.#unmarked.push({ block, crc, sums, buffered, resolve, reject });
      this.#flushing ??= this.#flushMarkers();
    });
    this.#known.failed.delete(block);
    this.#known.crcs[block] = crc;
    this.#setSums(block, sums);
    this.#present[block] = TRUSTED;
  }

  /**
   * Counts the block in the budget before it is written. A partial another
   * process retired meanwhile (evicted under pressure, or replaced) takes no
   * more blocks: they would fill an unlinked file nobody can use.
   */
  async #reserve(block: number, length: number): Promise<void> {
    if (!(await exists(join(this.#dir, `data.${this.#id}`)))) {
      throw new TierError(
        'CAPACITY',
        `the partial copy of '${this.key}' was removed (evicted or replaced by another process): block ${block} is not stored`,
        { key: this.key, tier: this.#host.tier, retryable: false },
      );
    }
    try {
      await this.#host.reserve(this.key, this.#entry, length);
    } catch (err) {
      throw this.#writeError(err, block);
    }
  }

  /** Bytes of the blocks this handle knows present. */
  #presentBytes(): number {
    let n = 0;
    for (let b = 0; b < this.blockCount; b++) {
      if (this.#present[b] !== ABSENT) n += Math.min(this.blockSize, this.size - b * this.blockSize);
    }
    return n;
  }

  /**
   * A failed block write, typed: out of space (or quota) is CAPACITY, which a
   * stack answers by serving the read from the origin; the rest is IO.
   */
  #writeError(err: unknown, block: number): TierError {
    if (err instanceof TierError) return err;
    const text = errText(err);
    const full = /ENOSPC|EDQUOT/.test(text);
    return new TierError(
      full ? 'CAPACITY' : 'IO',
      `block ${block} of the partial copy of '${this.key}': ${full ? 'no space left on the cache' : text}`,
      { cause: err, key: this.key, tier: this.#host.tier, retryable: false },
    );
  }

  /**
   * Writes the markers of the blocks written meanwhile, after their bytes reach the disk
   * (the server, on NFS): a sync of the data file, unless every one of them was written
   * with O_DIRECT (a completed direct write is already past the page cache). So a marker
   * never outlives its block's bytes in a crash, and a node that sees a marker finds the
   * bytes there.
   */
  async #flushMarkers(): Promise<void> {
    while (this.#unmarked.length > 0) {
      const batch = this.#unmarked;
      this.#unmarked = [];
      try {
        if (this.#host.fsync && batch.some((u) => u.buffered)) await this.#data.datasync();
        for (const u of batch) {
          // The record first: a marker another process sees has its record there already.
          if (this.#sums) {
            const rec = this.#layout.encode(u.sums, u.crc, this.#crc);
            await writeAll(this.#sums, rec, u.block * this.#layout.record);
          }
          const slot = Buffer.alloc(SLOT);
          slot.writeUInt32LE(u.crc, 0);
          slot.writeUInt32LE(MARKER, 4);
          await writeAll(this.#blocks, slot, u.block * SLOT);
          this.#markersDirty = true;
        }
        for (const u of batch) u.resolve();
      } catch (err) {
        for (const u of batch) u.reject(err);
      }
    }
    this.#flushing = undefined;
  }

  /** Writes `bytes` at `offset` through `fh` and returns their CRC-32: on a worker when there is a pool. */
  async #writeData(fh: fsp.FileHandle, bytes: Uint8Array, offset: number): Promise<number> {
    const pool = this.#host.pool;
    if (pool && !pool.closed && isShared(bytes)) {
      // Write and checksum on a worker: the event loop stays free for readers.
      return pool.write(fh.fd, bytes, offset, true);
    }
    await writeAll(fh, bytes, offset);
    return crc32(bytes);
  }

  async readInto(target: Uint8Array, offset: number): Promise<void> {
    if (target.byteLength === 0) return;
    this.#host.used(this.#entry);
    const first = Math.floor(offset / this.blockSize);
    const last = Math.floor((offset + target.byteLength - 1) / this.blockSize);
    for (let b = first; b <= last; b++) {
      if (!this.has(b)) {
        throw new TierError('IO', `block ${b} of '${this.key}' is not present yet`, {
          key: this.key,
          tier: this.#host.tier,
          retryable: false,
        });
      }
    }
    // Blocks unchecked when this read began are checked on the bytes it read, even if a
    // concurrent read checks them meanwhile: its bytes may be fresher than ours.
    const unchecked: number[] = [];
    for (let b = first; b <= last; b++) if (this.#present[b] === MARKED) unchecked.push(b);
    await readFull(this.#data, target, offset, this.key);
    for (const b of unchecked) {
      const start = b * this.blockSize;
      const length = Math.min(this.blockSize, this.size - start);
      // A block the read covered whole is checked on the bytes just read; an edge block is read whole.
      const covered = start >= offset && start + length <= offset + target.byteLength;
      const view = covered ? target.subarray(start - offset, start - offset + length) : undefined;
      await this.#checkMarked(b, view, target, offset);
      // The CRC runs here, on the bytes served (milliseconds per 8 MiB block): let timers,
      // lease beats among them, run between blocks of a long read.
      await setImmediateP();
    }
  }

  /**
   * Checks a block another process marked against its marker's CRC (`view`:
   * its bytes as just read, if the read covered it). On a mismatch the block
   * is read again through a fresh open — on NFS an open revalidates this
   * client's cached pages against the server (close-to-open) — and the good
   * bytes are copied into `target`. A block that still does not match is
   * not served: it is forgotten (its marker ignored) and the read fails with
   * CHANGED, which a stack answers by reading again, fetching the block anew.
   */
  async #checkMarked(
    b: number,
    view: Uint8Array | undefined,
    target: Uint8Array,
    offset: number,
  ): Promise<void> {
    const start = b * this.blockSize;
    const length = Math.min(this.blockSize, this.size - start);
    const want = this.#known.crcs[b]!;
    let bytes = view;
    if (!bytes) {
      bytes = Buffer.allocUnsafe(length);
      await readFull(this.#data, bytes, start, this.key);
    }
    if (crc32(bytes) !== want) {
      const fresh = await fsp.open(join(this.#dir, `data.${this.#id}`), 'r').catch(() => undefined);
      const again = Buffer.allocUnsafe(length);
      try {
        await readFull(fresh ?? this.#data, again, start, this.key);
      } finally {
        await fresh?.close();
      }
      if (crc32(again) !== want) {
        this.#present[b] = ABSENT;
        this.#known.failed.set(b, want);
        throw new TierError(
          'CHANGED',
          `block ${b} of the partial copy of '${this.key}' does not match the CRC its writer recorded; it will be fetched again`,
          { key: this.key, tier: this.#host.tier, retryable: true },
        );
      }
      bytes = again;
    }
    // Copy what the caller asked for from the checked bytes (a no-op copy when `view` was good).
    const from = Math.max(offset, start);
    const to = Math.min(offset + target.byteLength, start + length);
    if (bytes !== view) target.set(bytes.subarray(from - start, to - start), from - offset);
    // Checked bytes in hand: the block's publish sums, if its record did not give them.
    if (!this.#known.summed[b]) this.#setSums(b, this.#crc.blocks(bytes, this.#layout.unit));
    this.#present[b] = TRUSTED;
  }

  /** Keeps `sums`, block `b`'s unit CRC32Cs, for the publish. */
  #setSums(b: number, sums: Uint32Array): void {
    this.#known.sums.set(sums, b * this.#layout.perBlock);
    this.#known.summed[b] = 1;
  }

  /**
   * Takes the sums of present blocks this process has none for from their sealed
   * records in `sums.<id>` (read fresh: on NFS, the server's copy).
   */
  async #loadSums(): Promise<void> {
    const { summed, crcs } = this.#known;
    const todo: number[] = [];
    for (let b = 0; b < this.blockCount; b++) if (!summed[b] && this.has(b)) todo.push(b);
    if (todo.length === 0) return;
    const rec = this.#layout.record;
    const all = Buffer.alloc(this.blockCount * rec);
    const fresh = await fsp.open(join(this.#dir, `sums.${this.#id}`), 'r').catch(() => undefined);
    const fh = fresh ?? this.#sums;
    if (!fh) return;
    try {
      await fh.read(all, 0, all.byteLength, 0);
    } catch {
      return;
    } finally {
      await fresh?.close();
    }
    for (const b of todo) {
      const length = Math.min(this.blockSize, this.size - b * this.blockSize);
      const count = Math.ceil(length / this.#layout.unit);
      const sums = this.#layout.decode(all.subarray(b * rec, (b + 1) * rec), count, crcs[b]!, this.#crc);
      if (sums) this.#setSums(b, sums);
    }
  }

  /**
   * The CRC32Cs the entry publishes with. Blocks whose sums are known from neither their
   * write, a check, nor a sealed record (a partial from an older tierkit, a record lost in
   * a crash) are read once here — checked against their marker as any block another
   * process wrote — and counted (PartialHost.readBack).
   */
  async #publishSums(): Promise<BlockSums> {
    await this.#loadSums();
    for (let b = 0; b < this.blockCount; b++) {
      if (this.#known.summed[b]) continue;
      const start = b * this.blockSize;
      this.#present[b] = MARKED;
      await this.#checkMarked(b, undefined, new Uint8Array(0), start);
      this.#host.readBack?.(Math.min(this.blockSize, this.size - start));
    }
    return encodeSums(this.#known.sums, this.#layout.unit);
  }

  async publish(): Promise<ObjectMeta> {
    for (let b = 0; b < this.blockCount; b++) {
      if (!this.has(b)) {
        throw new TierError('IO', `cannot publish '${this.key}': block ${b} is missing`, {
          key: this.key,
          tier: this.#host.tier,
          retryable: false,
        });
      }
    }
    const sums = await this.#publishSums();
    if (this.#host.fsync) await this.#data.sync();
    // A private hard link is what gets renamed into place, so a process still
    // filling or reading this partial keeps a valid file, and a second publisher
    // only re-publishes the same bytes.
    const link = join(this.#host.dir, privateName('pub'));
    try {
      await fsp.link(join(this.#dir, `data.${this.#id}`), link);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Retired by another process meanwhile: published by it (served as is), or replaced for a new source.
      const meta = await this.#host.published(this.key, this.#source);
      if (meta) return meta;
      throw new TierError('CHANGED', `the partial copy of '${this.key}' was retired by another process`, {
        key: this.key,
        tier: this.#host.tier,
      });
    }
    // The host retires the partial in the same step: its bytes become the object's.
    return this.#host.publish(this.key, link, this.#source, this.#dir, this.#id, sums);
  }

  async discard(): Promise<void> {
    await this.#host.retire(this.#dir, this.#id);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inUse) this.#host.closed(this.#entry);
    for (const b of [...this.#claims.keys()]) await this.release(b);
    await this.#data.close().catch(() => {});
    await this.#blocks.close().catch(() => {});
    await this.#sums?.close().catch(() => {});
    await this.#direct?.close().catch(() => {});
    this.#direct = undefined;
  }

  /**
   * The markers. `fresh`: through a new open of the file, so that on NFS we
   * read the server's copy (close-to-open) rather than pages this client
   * cached: a claim holder that found no marker would fetch the block again.
   */
  async #readSlots(fresh = false): Promise<Buffer> {
    const buf = Buffer.alloc(this.blockCount * SLOT);
    const opened = fresh
      ? await fsp.open(join(this.#dir, `blocks.${this.#id}`), 'r').catch(() => undefined)
      : undefined;
    let bytesRead: number;
    try {
      // (Retired meanwhile: the handle we hold still reads the partial's last markers.)
      ({ bytesRead } = await (opened ?? this.#blocks).read(buf, 0, buf.byteLength, 0));
    } finally {
      await opened?.close();
    }
    return bytesRead === buf.byteLength
      ? buf
      : Buffer.concat([buf.subarray(0, bytesRead), Buffer.alloc(buf.byteLength - bytesRead)]);
  }

  /** Marks present the blocks whose bytes match their CRC; a torn block is cleared to be fetched again. */
  async #verify(): Promise<void> {
    const slots = await this.#readSlots();
    const pool = this.#host.pool;
    if (pool) {
      // Reading back and hashing a partial of gigabytes is seconds of CPU: on the pool's threads.
      const todo: number[] = [];
      for (let b = 0; b < this.blockCount; b++) {
        if (this.#present[b] !== TRUSTED && slots.readUInt32LE(b * SLOT + 4) === MARKER) todo.push(b);
      }
      const crcs = await pool.crc32(
        this.#data.fd,
        todo.map(
          (b) => [b * this.blockSize, Math.min(this.blockSize, this.size - b * this.blockSize)] as const,
        ),
      );
      for (const [i, b] of todo.entries()) {
        if (crcs[i] === slots.readUInt32LE(b * SLOT)) this.#trustAtReopen(b, slots);
        else await this.#torn(b);
      }
      // Their publish sums come from their sealed records (read with the markers, at publish).
      return;
    }
    const buf = Buffer.allocUnsafe(Math.min(this.blockSize, Math.max(this.size, 1)));
    for (let b = 0; b < this.blockCount; b++) {
      if (this.#present[b] === TRUSTED || slots.readUInt32LE(b * SLOT + 4) !== MARKER) continue;
      const offset = b * this.blockSize;
      const length = Math.min(this.blockSize, this.size - offset);
      const view = buf.subarray(0, length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await this.#data.read(view, done, length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      if (done === length && crc32(view) === slots.readUInt32LE(b * SLOT)) {
        this.#trustAtReopen(b, slots);
        // Bytes in hand: their sums need no record.
        if (!this.#known.summed[b]) this.#setSums(b, this.#crc.blocks(view, this.#layout.unit));
      } else {
        await this.#torn(b);
      }
    }
  }

  #trustAtReopen(b: number, slots: Buffer): void {
    this.#known.crcs[b] = slots.readUInt32LE(b * SLOT);
    this.#present[b] = TRUSTED;
  }

  /** A marked block whose bytes do not match at reopen (torn by a crash): cleared, to be fetched again. */
  async #torn(b: number): Promise<void> {
    this.#present[b] = ABSENT;
    await writeAll(this.#blocks, Buffer.alloc(SLOT), b * SLOT);
  }
}

/** O_DIRECT wants memory, offsets and lengths aligned to the device's logical block: 4 KiB covers them all. */
const DIRECT_ALIGN = 4096;

/** The file opened for O_DIRECT writes, or undefined where the platform or filesystem refuses it. */
async function openDirect(path: string): Promise<fsp.FileHandle | undefined> {
  const flag = constants.O_DIRECT;
  if (!flag) return undefined;
  return fsp.open(path, constants.O_RDWR | flag).catch(() => undefined);
}

async function writeAll(fh: fsp.FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, position + done);
    done += bytesWritten;
  }
}

async function readFull(
  fh: fsp.FileHandle,
  target: Uint8Array,
  position: number,
  key: string,
): Promise<void> {
  let done = 0;
  while (done < target.byteLength) {
    const { bytesRead } = await fh.read(target, done, target.byteLength - done, position + done);
    if (bytesRead === 0) throw new TierError('IO', `partial copy of '${key}' is shorter than expected`);
    done += bytesRead;
  }
}

/** The address of `view`'s first byte, where @tierkit/native is built. */
function addressOf(view: Uint8Array): bigint | undefined {
  try {
    return loadAddon()?.addressOf(view);
  } catch {
    return undefined;
  }
}

/** An error's errno and message (a worker's error may come back as a message only). */
function errText(err: unknown): string {
  return `${(err as NodeJS.ErrnoException)?.code ?? ''} ${(err as Error)?.message ?? String(err)}`;
}
