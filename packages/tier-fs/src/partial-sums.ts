/**
 * The CRC32Cs a partial copy's blocks will publish with (verify.ts checks reads
 * against them), taken from the bytes as they are written, never by reading the
 * file back, and kept in `sums.<id>` next to the block markers so that another
 * process, or this one after a restart, publishes with them too.
 *
 * Granularity (the `size` recorded in the sidecar): 1 MiB (VERIFY_BLOCK) when the
 * partial's block size is a multiple of it — the usual 4–8 MiB — else the
 * largest common divisor of the two where that is at least 64 KiB, else the
 * block size itself. Each sum then covers bytes of one block only, so it can be
 * computed from that block's write alone, in any order, by any process.
 *
 * `sums.<id>` holds one record per block: a CRC32C per unit of the block, then a
 * seal, the CRC32C of those sums continued from the block's marker CRC-32. A
 * record counts only where its seal matches the marker of the block it sits
 * beside, so a record torn by a crash, never written (a partial made by an older
 * tierkit), or left from bytes since rewritten is never published: that block's
 * sums are computed from its bytes at publish instead (the one read-back left).
 */
import type { Crc32c } from '@tierkit/native';
import { VERIFY_BLOCK } from './verify.js';

/** Below this, a common divisor of the block size and 1 MiB makes too many sums: one per block instead. */
const MIN_UNIT = 64 * 1024;

/** Bytes per CRC32C of a partial with blocks of `blockSize` bytes (it always divides `blockSize`). */
export function sumUnit(blockSize: number): number {
  if (blockSize % VERIFY_BLOCK === 0) return VERIFY_BLOCK;
  const g = gcd(blockSize, VERIFY_BLOCK);
  return g >= MIN_UNIT ? g : blockSize;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** The layout of one partial's `sums.<id>`. */
export class SumsLayout {
  /** Bytes per sum. */
  readonly unit: number;
  /** Sums per (whole) block. */
  readonly perBlock: number;
  /** Bytes per block's record: its sums, then the seal. */
  readonly record: number;

  constructor(blockSize: number) {
    this.unit = sumUnit(blockSize);
    this.perBlock = blockSize / this.unit;
    this.record = (this.perBlock + 1) * 4;
  }

  /** The record of a block whose marker CRC-32 is `marker` and whose unit sums are `sums`. */
  encode(sums: Uint32Array, marker: number, crc: Crc32c): Buffer {
    const rec = Buffer.alloc(this.record);
    for (let i = 0; i < sums.length; i++) rec.writeUInt32LE(sums[i]!, i * 4);
    rec.writeUInt32LE(crc.crc32c(rec.subarray(0, this.perBlock * 4), marker), this.perBlock * 4);
    return rec;
  }

  /** The `count` sums a record holds, or undefined where its seal does not match `marker`. */
  decode(rec: Uint8Array, count: number, marker: number, crc: Crc32c): Uint32Array | undefined {
    if (rec.byteLength < this.record) return undefined;
    const buf = Buffer.from(rec.buffer, rec.byteOffset, this.record);
    if (crc.crc32c(buf.subarray(0, this.perBlock * 4), marker) !== buf.readUInt32LE(this.perBlock * 4)) {
      return undefined;
    }
    const out = new Uint32Array(count);
    for (let i = 0; i < count; i++) out[i] = buf.readUInt32LE(i * 4);
    return out;
  }
}
