/**
 * CRC32C (Castagnoli): the per-block checksum tier-fs keeps for cached entries.
 * The addon computes it with the CPU's instructions (carry-less multiply and SSE4.2
 * crc32 on x86-64, ARMv8 CRC on arm64);
 * where no addon loads, a table-driven JavaScript version gives the same values
 * (about 20–40× slower). `TIERKIT_CRC32C=js` forces the JavaScript version,
 * `TIERKIT_CRC32C=portable` the addon's table version and `=sse4.2` the crc32
 * instruction without carry-less folding (read once, at first use).
 */
import { read } from 'node:fs';
import { loadAddon } from './index.js';

/** One way to compute CRC32C; every member gives the same values. */
export interface Crc32c {
  /** `sse4.2+pclmul`, `sse4.2`, `armv8-crc` or `table` (the addon), `js` (no addon). */
  readonly name: string;
  /** Continues the CRC32C `crc` (0 to start) over `bytes`: the finished CRC of everything so far. */
  crc32c(bytes: ArrayBufferView, crc?: number): number;
  /** One CRC32C per `blockSize` bytes of `bytes` (the last block may be short). */
  blocks(bytes: ArrayBufferView, blockSize: number): Uint32Array;
  /** `blocks` off the event loop (the addon: on libuv's threads; JavaScript: on this thread). */
  blocksAsync(bytes: ArrayBufferView, blockSize: number): Promise<Uint32Array>;
  /**
   * Fills `into` with the file's bytes at `position` and returns one CRC32C per
   * `blockSize` bytes of them, each block checksummed straight after it is read
   * (the addon: on libuv's threads, while the bytes are in the CPU cache). Rejects
   * where the file ends first.
   */
  read(fd: number, into: Uint8Array, position: number, blockSize: number): Promise<Uint32Array>;
  /**
   * One CRC32C per block of the file's bytes [offset, offset + length), read off the
   * event loop (libuv's threads). Rejects where the file ends first.
   */
  file(fd: number, offset: number, length: number, blockSize: number): Promise<Uint32Array>;
}

const POLY = 0x82f63b78;

/** Eight tables: TABLES[k * 256 + b] is the register after byte b and k zero bytes. */
const TABLES = (() => {
  const t = new Uint32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let r = b;
    for (let i = 0; i < 8; i++) r = r & 1 ? (r >>> 1) ^ POLY : r >>> 1;
    t[b] = r >>> 0;
  }
  for (let k = 1; k < 8; k++) {
    for (let b = 0; b < 256; b++) {
      const prev = t[(k - 1) * 256 + b]!;
      t[k * 256 + b] = ((prev >>> 8) ^ t[prev & 0xff]!) >>> 0;
    }
  }
  return t;
})();

function u8(view: ArrayBufferView): Uint8Array {
  return view instanceof Uint8Array ? view : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** CRC32C in JavaScript, eight bytes per step. */
export function crc32cJs(bytes: ArrayBufferView, crc = 0): number {
  const p = u8(bytes);
  const T = TABLES;
  let r = ~crc >>> 0;
  let i = 0;
  const n = p.byteLength;
  for (; i + 8 <= n; i += 8) {
    const lo = (r ^ (p[i]! | (p[i + 1]! << 8) | (p[i + 2]! << 16) | (p[i + 3]! << 24))) >>> 0;
    const hi = (p[i + 4]! | (p[i + 5]! << 8) | (p[i + 6]! << 16) | (p[i + 7]! << 24)) >>> 0;
    r =
      T[7 * 256 + (lo & 0xff)]! ^
      T[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      T[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      T[4 * 256 + (lo >>> 24)]! ^
      T[3 * 256 + (hi & 0xff)]! ^
      T[2 * 256 + ((hi >>> 8) & 0xff)]! ^
      T[256 + ((hi >>> 16) & 0xff)]! ^
      T[hi >>> 24]!;
  }
  for (; i < n; i++) r = (r >>> 8) ^ T[(r ^ p[i]!) & 0xff]!;
  return ~r >>> 0;
}

function checkBlockSize(blockSize: number): void {
  if (!(Number.isSafeInteger(blockSize) && blockSize >= 1)) {
    throw new RangeError(`blockSize must be a positive integer, got ${blockSize}`);
  }
}

function jsBlocks(bytes: ArrayBufferView, blockSize: number): Uint32Array {
  checkBlockSize(blockSize);
  const p = u8(bytes);
  const out = new Uint32Array(Math.ceil(p.byteLength / blockSize));
  for (let b = 0; b < out.length; b++) out[b] = crc32cJs(p.subarray(b * blockSize, (b + 1) * blockSize));
  return out;
}

async function jsFile(fd: number, offset: number, length: number, blockSize: number): Promise<Uint32Array> {
  checkBlockSize(blockSize);
  const out = new Uint32Array(Math.ceil(length / blockSize));
  const buf = new Uint8Array(Math.max(1, Math.min(length, Math.max(blockSize, 4 * 1024 * 1024))));
  let done = 0;
  while (done < length) {
    const want = Math.min(buf.byteLength, length - done);
    let got = 0;
    while (got < want) {
      const n = await readAt(fd, buf, got, want - got, offset + done + got);
      if (n === 0)
        throw Object.assign(new Error('pread: the file ended before the range did'), { code: 'EIO' });
      got += n;
    }
    let at = 0;
    while (at < want) {
      const pos = done + at;
      const b = Math.floor(pos / blockSize);
      const take = Math.min(blockSize - (pos % blockSize), want - at);
      out[b] = crc32cJs(buf.subarray(at, at + take), out[b]);
      at += take;
    }
    done += want;
  }
  return out;
}

async function jsRead(
  fd: number,
  into: Uint8Array,
  position: number,
  blockSize: number,
): Promise<Uint32Array> {
  checkBlockSize(blockSize);
  let got = 0;
  while (got < into.byteLength) {
    const n = await readAt(fd, into, got, into.byteLength - got, position + got);
    if (n === 0)
      throw Object.assign(new Error('pread: the file ended before the range did'), { code: 'EIO' });
    got += n;
  }
  return jsBlocks(into, blockSize);
}

function readAt(fd: number, buf: Uint8Array, at: number, length: number, position: number): Promise<number> {
  // fs.read on a bare descriptor (the caller owns it): no FileHandle that would close it.
  return new Promise((resolve, reject) => {
    read(fd, buf, at, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** The JavaScript version, always available. */
export const jsCrc32c: Crc32c = {
  name: 'js',
  crc32c: crc32cJs,
  blocks: jsBlocks,
  blocksAsync: async (bytes, blockSize) => jsBlocks(bytes, blockSize),
  read: jsRead,
  file: jsFile,
};

interface RawCrc {
  crc32c(view: ArrayBufferView, crc?: number): number;
  crc32cPortable(view: ArrayBufferView, crc?: number): number;
  crc32cBlocks(view: ArrayBufferView, blockSize: number): Uint32Array;
  crc32cBlocksAsync(view: ArrayBufferView, blockSize: number): Promise<Uint32Array>;
  crc32cFile(fd: number, offset: number, length: number, blockSize: number): Promise<Uint32Array>;
  crc32cRead(fd: number, view: Uint8Array, position: number, blockSize: number): Promise<Uint32Array>;
  crc32cImpl: string;
}

/** The addon's version (hardware where the CPU has it), or undefined where the addon is absent or predates it. */
export function nativeCrc32c(): Crc32c | undefined {
  const a = loadAddon() as unknown as Partial<RawCrc> | undefined;
  if (!a || typeof a.crc32c !== 'function' || typeof a.crc32cRead !== 'function') return undefined;
  const raw = a as RawCrc;
  return {
    name: raw.crc32cImpl,
    crc32c: (bytes, crc = 0) => raw.crc32c(bytes, crc),
    blocks: (bytes, blockSize) => {
      checkBlockSize(blockSize);
      return raw.crc32cBlocks(bytes, blockSize);
    },
    blocksAsync: async (bytes, blockSize) => {
      checkBlockSize(blockSize);
      return raw.crc32cBlocksAsync(bytes, blockSize);
    },
    read: async (fd, into, position, blockSize) => {
      checkBlockSize(blockSize);
      if (into.byteLength === 0) return new Uint32Array(0);
      return raw.crc32cRead(fd, into, position, blockSize);
    },
    file: async (fd, offset, length, blockSize) => {
      checkBlockSize(blockSize);
      if (length === 0) return new Uint32Array(0);
      return raw.crc32cFile(fd, offset, length, blockSize);
    },
  };
}

/** The addon's table version (for tests comparing it with the hardware one), where the addon loads. */
export function portableCrc32c(): ((bytes: ArrayBufferView, crc?: number) => number) | undefined {
  const a = loadAddon() as unknown as Partial<RawCrc> | undefined;
  return typeof a?.crc32cPortable === 'function' ? a.crc32cPortable : undefined;
}

let chosen: Crc32c | undefined;

/**
 * The process's CRC32C: the addon's unless `TIERKIT_CRC32C=js` (read once) or no addon
 * loads. The addon itself honours `TIERKIT_CRC32C=portable` (its table version).
 */
export function crc32c(): Crc32c {
  if (chosen) return chosen;
  chosen = (process.env.TIERKIT_CRC32C === 'js' ? undefined : nativeCrc32c()) ?? jsCrc32c;
  return chosen;
}
