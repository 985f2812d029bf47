/**
 * Verified reads (`verify` option): every complete entry records a CRC32C per
 * 1 MiB block in its sidecar when it is published, and reads check the blocks
 * they serve against them, so bytes that rotted on the disk (or were changed
 * behind tierkit's back with the timestamps put back) are never served.
 *
 * - `always`: each block is checked every time a read touches it. A read is
 *   widened to whole blocks (at most one extra block at each end, read into a
 *   scratch buffer); the blocks inside the range are read straight into the
 *   caller's memory and checked there.
 * - `first`: each block is checked the first time this tier instance serves it;
 *   reads of checked blocks cost nothing more.
 * - `never`: nothing is checked (sums are still recorded at publish, so a later
 *   process may check).
 *
 * A mismatch drops the entry (file and sidecar) and fails the read with
 * INTEGRITY (`details.dropped`): a stack then serves the read from the origin
 * and fills the entry again.
 *
 * Entries without recorded sums (cached by an older tierkit) get them on their
 * first verified read, computed from the file then (trust on first use: a rot
 * older than that is not caught). Files whose sidecar does not describe them
 * (none, or another version) are served unchecked and counted as `unverifiable`.
 */
import { promises as fsp } from 'node:fs';
import { Readable } from 'node:stream';
import { type Crc32c, crc32c } from '@tierkit/native';
import { TierError, throwIfAborted } from '@tierkit/tier-core';
import { type BlockSums, identity, type Sidecar, sidecarMatch } from './sidecar.js';

export type VerifyMode = 'always' | 'first' | 'never';

export const VERIFY_MODES: readonly VerifyMode[] = ['always', 'first', 'never'];

/** Bytes per checksummed block of new entries (older sums keep the size they record). */
export const VERIFY_BLOCK = 1024 * 1024;

/**
 * Interior runs up to this long are read as any read (inline from the page cache where
 * it can) and checked on the calling thread; longer ones are read and checked together
 * on libuv's threads, piece by piece, `concurrency` pieces at once.
 */
const INLINE_CHECK_MAX = 4 * 1024 * 1024;
const PIECE = 4 * 1024 * 1024;

/** The parts of a file's stat that name its version (size, mtime in ns, inode). */
export interface FileVersion {
  readonly size: bigint;
  readonly mtimeNs: bigint;
  readonly ino: bigint;
}

/** What a verifier needs from its tier. */
export interface VerifyHost {
  readonly tier: string;
  readonly readOnly: boolean;
  /** Pieces of a large read read and checked at once. */
  readonly concurrency: number;
  sidecarPath(key: string): string;
  /** Replaces the sidecar of `body.key` (atomically). */
  writeSidecar(body: Sidecar): Promise<void>;
  /** Removes the entry: its file and sidecar. */
  drop(key: string): Promise<void>;
}

/** An open entry being read. */
export interface VerifyFile {
  readonly fd: number;
  readonly size: number;
  readonly version: FileVersion;
}

export interface VerifyStats {
  /** Blocks checked (and found good). */
  readonly blocksChecked: number;
  readonly bytesChecked: number;
  /** Blocks that did not match: each dropped its entry. */
  readonly mismatches: number;
  /** Reads of files whose sidecar does not describe them, served unchecked. */
  readonly unverifiable: number;
  /** Entries whose sums were computed at a read (cached before sums were recorded). */
  readonly sumsComputed: number;
  /**
   * Bytes read back from the disk at publish to take block sums: 0 on every write and
   * fill path, which checksum the bytes as they pass; only blocks of a partial whose
   * sums were lost (made by an older tierkit, or a record torn by a crash) count here.
   */
  readonly publishReadBytes: number;
}

interface Known {
  readonly id: string;
  /** Undefined: unverifiable. */
  readonly sums: Uint32Array | undefined;
  readonly blockSize: number;
  /** `first`: blocks checked by this instance, and how many are left. */
  readonly checked: Uint8Array | undefined;
  left: number;
}

export function encodeSums(sums: Uint32Array, blockSize: number): BlockSums {
  const bytes = new Uint8Array(sums.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < sums.length; i++) view.setUint32(i * 4, sums[i]!, true);
  return { size: blockSize, crc32c: Buffer.from(bytes).toString('base64') };
}

/** The sums of an entry of `size` bytes, or undefined when `b` is not a well-formed record for that size. */
export function decodeSums(b: BlockSums | undefined, size: number): Uint32Array | undefined {
  if (!b || !Number.isSafeInteger(b.size) || b.size < 1 || typeof b.crc32c !== 'string') return undefined;
  const bytes = Buffer.from(b.crc32c, 'base64');
  const count = Math.ceil(size / b.size);
  if (bytes.byteLength !== count * 4) return undefined;
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = bytes.readUInt32LE(i * 4);
  return out;
}

/**
 * The block sums of bytes written in pieces of any size (a write's stream): each piece
 * is checksummed as it passes, a block's CRC32C continued across piece boundaries.
 */
export class StreamSums {
  readonly #crc: Crc32c;
  readonly #sums: number[] = [];
  /** The CRC32C of the current block so far, and its bytes. */
  #cur = 0;
  #filled = 0;

  constructor(crc: Crc32c = crc32c()) {
    this.#crc = crc;
  }

  update(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.byteLength) {
      const take = Math.min(VERIFY_BLOCK - this.#filled, bytes.byteLength - at);
      this.#cur = this.#crc.crc32c(bytes.subarray(at, at + take), this.#cur);
      this.#filled += take;
      at += take;
      if (this.#filled === VERIFY_BLOCK) {
        this.#sums.push(this.#cur);
        this.#cur = 0;
        this.#filled = 0;
      }
    }
  }

  /** The sums of everything passed (the last block short). */
  finish(): BlockSums {
    const all = this.#filled > 0 ? [...this.#sums, this.#cur] : this.#sums;
    return encodeSums(Uint32Array.from(all), VERIFY_BLOCK);
  }
}

/**
 * The block sums of a complete file, read back from it (on libuv's threads where the
 * addon is built): for a file whose bytes were never in hand; the write and fill paths
 * take theirs as the bytes pass.
 */
export async function sumsOfFile(path: string, size: number, crc: Crc32c = crc32c()): Promise<BlockSums> {
  const fh = await fsp.open(path, 'r');
  try {
    return encodeSums(await crc.file(fh.fd, 0, size, VERIFY_BLOCK), VERIFY_BLOCK);
  } finally {
    await fh.close();
  }
}

export class Verifier {
  readonly mode: VerifyMode;
  readonly #host: VerifyHost;
  readonly #crc: Crc32c;
  readonly #known = new Map<string, Known>();
  readonly #loading = new Map<string, Promise<Known>>();
  #blocksChecked = 0;
  #bytesChecked = 0;
  #mismatches = 0;
  #unverifiable = 0;
  #sumsComputed = 0;
  #publishReadBytes = 0;

  constructor(mode: VerifyMode, host: VerifyHost, crc: Crc32c = crc32c()) {
    this.mode = mode;
    this.#host = host;
    this.#crc = crc;
  }

  get stats(): VerifyStats {
    return {
      blocksChecked: this.#blocksChecked,
      bytesChecked: this.#bytesChecked,
      mismatches: this.#mismatches,
      unverifiable: this.#unverifiable,
      sumsComputed: this.#sumsComputed,
      publishReadBytes: this.#publishReadBytes,
    };
  }

  /** Counts bytes read back at publish to take block sums (see VerifyStats.publishReadBytes). */
  countReadBack(bytes: number): void {
    this.#publishReadBytes += bytes;
  }

  /** The CRC32C implementation in use (`sse4.2`, `armv8-crc`, `table` or `js`). */
  get implementation(): string {
    return this.#crc.name;
  }

  /** Forgets what this instance checked of `key` (its file was replaced or removed). */
  forget(key: string): void {
    this.#known.delete(key);
  }

  /**
   * Fills `view` with the bytes of `file` at `offset`, through `readAt`, checking
   * the blocks it covers as the mode says. Throws INTEGRITY (after dropping the
   * entry) where a block does not match.
   */
  async read(
    key: string,
    file: VerifyFile,
    view: Uint8Array,
    offset: number,
    readAt: (into: Uint8Array, position: number) => Promise<void>,
    signal?: AbortSignal,
  ): Promise<void> {
    const length = view.byteLength;
    if (this.mode === 'never' || length === 0) return readAt(view, offset);
    const id = identity(file.version as Parameters<typeof identity>[0]);
    let known = this.#known.get(key);
    // `first` after every block was checked: the whole cost is this lookup.
    if (known?.id === id && known.checked && known.left === 0) return readAt(view, offset);
    if (known?.id !== id) known = await this.#load(key, id, file);
    if (!known.sums) {
      this.#unverifiable++;
      return readAt(view, offset);
    }
    const bs = known.blockSize;
    const end = offset + length;
    const first = Math.floor(offset / bs);
    const last = Math.floor((end - 1) / bs);
    if (known.checked && allChecked(known.checked, first, last)) return readAt(view, offset);

    // Whole blocks inside [offset, end) are read into the caller's memory; an edge block
    // the range covers only in part is read whole into scratch memory, checked, copied.
    const innerFirst = offset % bs === 0 ? first : first + 1;
    const innerLast = end % bs === 0 || end === file.size ? last : last - 1;
    const jobs: Promise<void>[] = [];
    if (innerFirst <= innerLast) {
      const from = innerFirst * bs;
      const to = Math.min(file.size, (innerLast + 1) * bs);
      const inner = view.subarray(from - offset, to - offset);
      jobs.push(
        inner.byteLength <= INLINE_CHECK_MAX
          ? readAt(inner, from).then(() => this.#check(key, known, inner, innerFirst))
          : this.#readPieces(key, known, file.fd, inner, from, innerFirst, signal),
      );
    }
    for (const b of new Set([first, last])) {
      if (b >= innerFirst && b <= innerLast) continue;
      jobs.push(this.#readEdge(key, known, file, b, view, offset, readAt));
    }
    const settled = await Promise.allSettled(jobs);
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
  }

  async #readEdge(
    key: string,
    known: Known,
    file: VerifyFile,
    b: number,
    view: Uint8Array,
    offset: number,
    readAt: (into: Uint8Array, position: number) => Promise<void>,
  ): Promise<void> {
    const bs = known.blockSize;
    const start = b * bs;
    const block = new Uint8Array(Math.min(bs, file.size - start));
    await readAt(block, start);
    await this.#check(key, known, block, b);
    const from = Math.max(start, offset);
    const to = Math.min(start + block.byteLength, offset + view.byteLength);
    view.set(block.subarray(from - start, to - start), from - offset);
  }

  /**
   * A long run of whole blocks, read and checked together in pieces on libuv's threads
   * (each block checksummed right after its read, while it is in the CPU cache), so
   * reading and checking overlap across threads.
   */
  async #readPieces(
    key: string,
    known: Known,
    fd: number,
    inner: Uint8Array,
    position: number,
    firstBlock: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const bs = known.blockSize;
    const piece = Math.max(bs, Math.floor(PIECE / bs) * bs);
    const count = Math.ceil(inner.byteLength / piece);
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < count; i = next++) {
        throwIfAborted(signal, key);
        const at = i * piece;
        const part = inner.subarray(at, at + piece);
        const got = await this.#crc.read(fd, part, position + at, bs);
        await this.#compare(key, known, got, part.byteLength, firstBlock + at / bs);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#host.concurrency, count) }, worker));
  }

  /** Checks `bytes`, the blocks from `firstBlock` on. */
  #check(key: string, known: Known, bytes: Uint8Array, firstBlock: number): Promise<void> {
    return this.#compare(key, known, this.#crc.blocks(bytes, known.blockSize), bytes.byteLength, firstBlock);
  }

  /** Compares the CRCs `got` of `bytes` bytes from block `firstBlock` on with the recorded ones. */
  async #compare(
    key: string,
    known: Known,
    got: Uint32Array,
    bytes: number,
    firstBlock: number,
  ): Promise<void> {
    const sums = known.sums!;
    for (let i = 0; i < got.length; i++) {
      const b = firstBlock + i;
      if (got[i] !== sums[b]) await this.#mismatch(key, known, b, sums[b]!, got[i]!);
    }
    this.#blocksChecked += got.length;
    this.#bytesChecked += bytes;
    if (known.checked) {
      for (let i = 0; i < got.length; i++) {
        if (known.checked[firstBlock + i] === 0) {
          known.checked[firstBlock + i] = 1;
          known.left--;
        }
      }
    }
  }

  async #mismatch(
    key: string,
    known: Known,
    block: number,
    expected: number,
    actual: number,
  ): Promise<never> {
    this.#mismatches++;
    if (this.#known.get(key) === known) this.#known.delete(key);
    let dropped = false;
    if (!this.#host.readOnly) {
      try {
        await this.#host.drop(key);
        dropped = true;
      } catch {
        // Still failed below: the bytes are wrong whether or not the file could go.
      }
    }
    const start = block * known.blockSize;
    const hex = (n: number) => n.toString(16).padStart(8, '0');
    throw new TierError(
      'INTEGRITY',
      `'${key}': bytes ${start}–${start + known.blockSize - 1} do not match the CRC32C recorded when they ` +
        `were cached (${hex(actual)}, expected ${hex(expected)}); ` +
        (dropped ? 'the entry was dropped' : 'the entry was kept (a read-only tier)'),
      {
        key,
        tier: this.#host.tier,
        retryable: false,
        details: { reason: 'checksum', block, expected, actual, dropped },
      },
    );
  }

  /** The sums of `key`'s file `id`, loaded once however many reads ask at once. */
  #load(key: string, id: string, file: VerifyFile): Promise<Known> {
    const tag = `${key}\0${id}`;
    let p = this.#loading.get(tag);
    if (!p) {
      p = this.#loadNow(key, id, file).finally(() => this.#loading.delete(tag));
      this.#loading.set(tag, p);
    }
    return p;
  }

  async #loadNow(key: string, id: string, file: VerifyFile): Promise<Known> {
    const side = await this.#readSidecar(key);
    const match = sidecarMatch(side, file.version as Parameters<typeof sidecarMatch>[1]);
    let sums: Uint32Array | undefined;
    let blockSize = VERIFY_BLOCK;
    if (match !== 'other') {
      sums = decodeSums(side!.blocks, file.size);
      if (sums) {
        blockSize = side!.blocks!.size;
      } else {
        // Cached before sums were recorded: computed now, kept for the next process.
        sums = await this.#crc.file(file.fd, 0, file.size, VERIFY_BLOCK);
        this.#sumsComputed++;
        if (!this.#host.readOnly && match === 'same') {
          await this.#host.writeSidecar({ ...side!, blocks: encodeSums(sums, VERIFY_BLOCK) }).catch(() => {});
        }
      }
    }
    const count = sums?.length ?? 0;
    const known: Known = {
      id,
      sums,
      blockSize,
      checked: this.mode === 'first' && sums ? new Uint8Array(count) : undefined,
      left: count,
    };
    this.#known.set(key, known);
    return known;
  }

  async #readSidecar(key: string): Promise<Sidecar | undefined> {
    try {
      const body = JSON.parse(await fsp.readFile(this.#host.sidecarPath(key), 'utf8')) as Sidecar;
      return body && body.key === key && typeof body.id === 'string' ? body : undefined;
    } catch {
      return undefined;
    }
  }
}

function allChecked(checked: Uint8Array, first: number, last: number): boolean {
  for (let b = first; b <= last; b++) if (checked[b] === 0) return false;
  return true;
}

/**
 * A stream of [offset, offset + length) read through `read` (a checked read) in
 * pieces that end on block boundaries, so no block is checked twice. A block that
 * does not match fails the stream with the read's INTEGRITY error. `close` runs
 * once when the stream ends or is destroyed.
 */
export function checkedStream(
  read: (into: Uint8Array, position: number) => Promise<void>,
  offset: number,
  length: number,
  close: () => Promise<void>,
): Readable {
  const end = offset + length;
  let at = offset;
  return new Readable({
    highWaterMark: VERIFY_BLOCK,
    read() {
      if (at >= end) {
        this.push(null);
        return;
      }
      const to = Math.min(end, (Math.floor(at / VERIFY_BLOCK) + 1) * VERIFY_BLOCK);
      const piece = new Uint8Array(to - at);
      const position = at;
      at = to;
      read(piece, position).then(
        () => this.push(piece),
        (err) => this.destroy(err),
      );
    },
    destroy(err, callback) {
      close().then(
        () => callback(err),
        () => callback(err),
      );
    },
  });
}

/** The block sums of `bytes` about to be written whole (off the event loop where the addon is built). */
export async function sumsOfBytes(bytes: Uint8Array, crc: Crc32c = crc32c()): Promise<BlockSums> {
  return encodeSums(await crc.blocksAsync(bytes, VERIFY_BLOCK), VERIFY_BLOCK);
}
