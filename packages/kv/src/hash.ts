/**
 * Prefix-chained chunk hashes of token ids. The algorithm is fixed (see the
 * README, "Chunk hashes") so that every process, host and language computes the
 * same names for the same tokens:
 *
 *   prev_0 = 32 zero bytes
 *   h_i    = SHA-256(prev_i || u32le(t_start) || … || u32le(t_end-1))
 *   prev_{i+1} = h_i
 *
 * for chunk i covering tokens [i·C, min((i+1)·C, n)). A chunk's hash therefore
 * names its tokens and every token before them: equal hashes mean equal prefixes.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { TierError } from '@tierkit/tier-core';

/** Token ids: integers in [0, 2³²). */
export type TokenIds = ArrayLike<number>;

export const DEFAULT_CHUNK_SIZE = 256;
const ZERO_HASH = new Uint8Array(32);
const LITTLE_ENDIAN = endianness() === 'LE';

export interface ChunkHashOptions {
  /** Tokens per chunk (default 256). */
  readonly chunkSize?: number;
  /** Hash a trailing chunk shorter than `chunkSize` too (default true, as LMCache saves unfull chunks). */
  readonly partial?: boolean;
}

/** One chunk of a token sequence. */
export interface TokenChunk {
  /** Position of the chunk in its sequence (0 = the first). */
  readonly index: number;
  /** First token (inclusive) and end (exclusive). */
  readonly start: number;
  readonly end: number;
  /** 64 lowercase hex digits. */
  readonly hash: string;
}

export function checkChunkSize(chunkSize: number | undefined): number {
  const c = chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isSafeInteger(c) || c < 1) {
    throw new TierError('INVALID_ARGUMENT', `chunkSize must be a positive integer, got ${chunkSize}`, {
      retryable: false,
    });
  }
  return c;
}

/** The chunks of `tokens` with their prefix-chained hashes. */
export function chunkHashes(tokens: TokenIds, options: ChunkHashOptions = {}): TokenChunk[] {
  const size = checkChunkSize(options.chunkSize);
  const n = tokens?.length;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new TierError('INVALID_ARGUMENT', 'tokens must be an array of token ids', { retryable: false });
  }
  const whole = Math.floor(n / size);
  const count = options.partial === false ? whole : Math.ceil(n / size);
  const out: TokenChunk[] = [];
  // One scratch buffer for every chunk: the token bytes are hashed, never kept.
  const scratch = Buffer.allocUnsafe(size * 4);
  let prev: Uint8Array = ZERO_HASH;
  for (let i = 0; i < count; i++) {
    const start = i * size;
    const end = Math.min(start + size, n);
    const bytes = tokenBytes(tokens, start, end, scratch);
    const digest = createHash('sha256').update(prev).update(bytes).digest();
    out.push({ index: i, start, end, hash: digest.toString('hex') });
    prev = digest;
  }
  return out;
}

/** The little-endian u32 bytes of tokens [start, end), validated. */
function tokenBytes(tokens: TokenIds, start: number, end: number, scratch: Buffer): Uint8Array {
  // A Uint32Array on a little-endian host already is the wire form.
  if (LITTLE_ENDIAN && tokens instanceof Uint32Array) {
    return new Uint8Array(tokens.buffer, tokens.byteOffset + start * 4, (end - start) * 4);
  }
  for (let i = start; i < end; i++) {
    const t = tokens[i]!;
    if (!Number.isInteger(t) || t < 0 || t > 0xffffffff) {
      throw new TierError('INVALID_ARGUMENT', `token ${i} is ${t}: token ids are integers in [0, 2^32)`, {
        retryable: false,
      });
    }
    scratch.writeUInt32LE(t, (i - start) * 4);
  }
  return scratch.subarray(0, (end - start) * 4);
}
