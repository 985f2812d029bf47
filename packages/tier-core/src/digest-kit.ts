/**
 * The digest algorithms a fill checks: MD5, SHA-1 and SHA-256 (node:crypto),
 * CRC32 (zlib.crc32 where Node has it, else a table), CRC32C and CRC64NVME
 * (table-driven, eight bytes per step), whole or per part.
 *
 * `digestKit` is self-contained on purpose — it references nothing outside its
 * own body — because the digest worker (digest-worker.ts) runs its source text
 * (`digestKit.toString()`): no worker file to locate beside the bundle, the same
 * code in tests (from .ts) and in dist. Keep it that way: no imports inside,
 * no helpers outside.
 */
import type { DigestAlgorithm } from './tier.js';

/** What to compute: one algorithm, over the whole object or per part of `partSize` bytes. */
export interface DigestSpec {
  readonly algorithm: DigestAlgorithm;
  /** Per part: the digest of the concatenated part digests (S3 multipart ETags, COMPOSITE checksums). */
  readonly partSize?: number;
}

/** A running digest; `finish` returns lower-case hex. */
export interface DigestState {
  update(bytes: Uint8Array): void;
  finish(): string;
}

export interface DigestKit {
  create(spec: DigestSpec): DigestState;
  /** One-shot CRCs (for tests and vectors). */
  crc32c(bytes: Uint8Array, seed?: number): number;
  crc64nvme(bytes: Uint8Array): bigint;
  crc32(bytes: Uint8Array, seed?: number): number;
  /** Whether CRC32 uses zlib's (native) implementation. */
  readonly nativeCrc32: boolean;
}

/** `req`: the host's `require` (the main thread's, or an eval'd worker's). */
export function digestKit(req: (id: string) => unknown): DigestKit {
  const crypto = req('node:crypto') as typeof import('node:crypto');
  const zlib = req('node:zlib') as { crc32?: (data: Uint8Array, value?: number) => number };

  /** 8 tables of 256 for a reflected 32-bit CRC polynomial (slicing-by-8). */
  function tables32(poly: number): Uint32Array {
    const t = new Uint32Array(8 * 256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
      t[n] = c >>> 0;
    }
    for (let n = 0; n < 256; n++) {
      let c = t[n]!;
      for (let k = 1; k < 8; k++) {
        c = (c >>> 8) ^ t[c & 0xff]!;
        t[k * 256 + n] = c >>> 0;
      }
    }
    return t;
  }

  function update32(t: Uint32Array, crc: number, b: Uint8Array): number {
    let c = ~crc >>> 0;
    let i = 0;
    const n = b.length;
    for (; i + 8 <= n; i += 8) {
      const a = c ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
      c =
        t[1792 + (a & 0xff)]! ^
        t[1536 + ((a >>> 8) & 0xff)]! ^
        t[1280 + ((a >>> 16) & 0xff)]! ^
        t[1024 + (a >>> 24)]! ^
        t[768 + b[i + 4]!]! ^
        t[512 + b[i + 5]!]! ^
        t[256 + b[i + 6]!]! ^
        t[b[i + 7]!]!;
    }
    for (; i < n; i++) c = (c >>> 8) ^ t[(c ^ b[i]!) & 0xff]!;
    return ~c >>> 0;
  }

  /** CRC64NVME (reflected 0x9A6C9329AC4BC9B5): each 64-bit table entry as two 32-bit halves. */
  function tables64(): { lo: Uint32Array; hi: Uint32Array } {
    const polyLo = 0xac4bc9b5;
    const polyHi = 0x9a6c9329;
    const lo = new Uint32Array(8 * 256);
    const hi = new Uint32Array(8 * 256);
    for (let n = 0; n < 256; n++) {
      let l = n;
      let h = 0;
      for (let k = 0; k < 8; k++) {
        const odd = l & 1;
        l = ((l >>> 1) | (h << 31)) >>> 0;
        h = h >>> 1;
        if (odd) {
          l = (l ^ polyLo) >>> 0;
          h = (h ^ polyHi) >>> 0;
        }
      }
      lo[n] = l;
      hi[n] = h;
    }
    for (let n = 0; n < 256; n++) {
      let l = lo[n]!;
      let h = hi[n]!;
      for (let k = 1; k < 8; k++) {
        const x = l & 0xff;
        l = (((l >>> 8) | (h << 24)) ^ lo[x]!) >>> 0;
        h = ((h >>> 8) ^ hi[x]!) >>> 0;
        lo[k * 256 + n] = l;
        hi[k * 256 + n] = h;
      }
    }
    return { lo, hi };
  }

  let t32c: Uint32Array | undefined;
  let t32: Uint32Array | undefined;
  let t64: { lo: Uint32Array; hi: Uint32Array } | undefined;
  const nativeCrc32 = typeof zlib.crc32 === 'function';

  function crc32c(b: Uint8Array, seed = 0): number {
    t32c ??= tables32(0x82f63b78);
    return update32(t32c, seed, b);
  }
  function crc32(b: Uint8Array, seed = 0): number {
    if (zlib.crc32) return zlib.crc32(b, seed) >>> 0;
    t32 ??= tables32(0xedb88320);
    return update32(t32, seed, b);
  }

  /** A running CRC64NVME: [lo, hi] of the register (inverted in and out). */
  function crc64Update(state: Uint32Array, b: Uint8Array): void {
    t64 ??= tables64();
    const { lo: tl, hi: th } = t64;
    let l = ~state[0]! >>> 0;
    let h = ~state[1]! >>> 0;
    let i = 0;
    const n = b.length;
    for (; i + 8 <= n; i += 8) {
      const a = l ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
      const c = h ^ (b[i + 4]! | (b[i + 5]! << 8) | (b[i + 6]! << 16) | (b[i + 7]! << 24));
      const i7 = 1792 + (a & 0xff);
      const i6 = 1536 + ((a >>> 8) & 0xff);
      const i5 = 1280 + ((a >>> 16) & 0xff);
      const i4 = 1024 + (a >>> 24);
      const i3 = 768 + (c & 0xff);
      const i2 = 512 + ((c >>> 8) & 0xff);
      const i1 = 256 + ((c >>> 16) & 0xff);
      const i0 = c >>> 24;
      l = tl[i7]! ^ tl[i6]! ^ tl[i5]! ^ tl[i4]! ^ tl[i3]! ^ tl[i2]! ^ tl[i1]! ^ tl[i0]!;
      h = th[i7]! ^ th[i6]! ^ th[i5]! ^ th[i4]! ^ th[i3]! ^ th[i2]! ^ th[i1]! ^ th[i0]!;
    }
    for (; i < n; i++) {
      const x = (l ^ b[i]!) & 0xff;
      l = ((l >>> 8) | (h << 24)) ^ tl[x]!;
      h = (h >>> 8) ^ th[x]!;
    }
    state[0] = ~l >>> 0;
    state[1] = ~h >>> 0;
  }

  function crc64nvme(b: Uint8Array): bigint {
    const s = new Uint32Array(2);
    crc64Update(s, b);
    return (BigInt(s[1]!) << 32n) | BigInt(s[0]!);
  }

  /** A whole-object digest state that also yields its raw bytes (for per-part digests). */
  interface Raw {
    update(b: Uint8Array): void;
    raw(): Uint8Array;
  }

  function be32(v: number): Uint8Array {
    const o = new Uint8Array(4);
    new DataView(o.buffer).setUint32(0, v >>> 0);
    return o;
  }

  function rawState(algorithm: string): Raw {
    switch (algorithm) {
      case 'md5':
      case 'sha1':
      case 'sha256': {
        const h = crypto.createHash(algorithm);
        return { update: (b) => h.update(b), raw: () => new Uint8Array(h.digest()) };
      }
      case 'crc32': {
        let c = 0;
        return {
          update: (b) => {
            c = crc32(b, c);
          },
          raw: () => be32(c),
        };
      }
      case 'crc32c': {
        let c = 0;
        return {
          update: (b) => {
            c = crc32c(b, c);
          },
          raw: () => be32(c),
        };
      }
      case 'crc64nvme': {
        const s = new Uint32Array(2);
        return {
          update: (b) => crc64Update(s, b),
          raw: () => {
            const o = new Uint8Array(8);
            const v = new DataView(o.buffer);
            v.setUint32(0, s[1]!);
            v.setUint32(4, s[0]!);
            return o;
          },
        };
      }
      default:
        throw new Error(`unknown digest algorithm '${algorithm}'`);
    }
  }

  function hex(b: Uint8Array): string {
    let s = '';
    for (const x of b) s += (x < 16 ? '0' : '') + x.toString(16);
    return s;
  }

  function create(spec: DigestSpec): DigestState {
    const partSize = spec.partSize;
    if (!partSize) {
      const r = rawState(spec.algorithm);
      return { update: (b) => r.update(b), finish: () => hex(r.raw()) };
    }
    // Per part: each part's digest, then the digest of their concatenation.
    const outer = rawState(spec.algorithm);
    let part = rawState(spec.algorithm);
    let left = partSize;
    let started = false;
    return {
      update(b) {
        let i = 0;
        while (i < b.length) {
          if (left === 0) {
            outer.update(part.raw());
            part = rawState(spec.algorithm);
            left = partSize;
          }
          const n = Math.min(left, b.length - i);
          part.update(b.subarray(i, i + n));
          started = true;
          left -= n;
          i += n;
        }
      },
      finish() {
        if (started) outer.update(part.raw());
        return hex(outer.raw());
      },
    };
  }

  return { create, crc32c, crc64nvme, crc32, nativeCrc32 };
}
