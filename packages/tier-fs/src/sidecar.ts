/**
 * An entry's sidecar: the origin version and checksum recorded next to a cached
 * file, tied to that file's identity so that an edit outside tierkit orphans it.
 */
import type { BigIntStats } from 'node:fs';
import type { SourceMeta } from '@tierkit/tier-core';

export interface Sidecar {
  readonly key: string;
  /** `<size>:<mtimeNs>:<ino>` of the data file this metadata belongs to. */
  readonly id: string;
  readonly source?: SourceMeta;
  /** A digest of the data file's bytes, recorded by whoever computed it (the warmer). */
  readonly checksum?: FsChecksum;
  /** CRC32C of each block of the data file, recorded when it was published (see verify.ts). */
  readonly blocks?: BlockSums;
}

/** Per-block CRC32Cs of an entry: what `verify` checks reads against. */
export interface BlockSums {
  /** Bytes per block (the last block may be short). */
  readonly size: number;
  /** The CRC32Cs, 4 bytes each, little-endian, in base64. */
  readonly crc32c: string;
}

/** A digest of an entry's bytes, kept in its sidecar (tied to the data file's identity). */
export interface FsChecksum {
  readonly algorithm: 'sha256';
  /** Lower-case hex. */
  readonly value: string;
}

/** The ETag of a file: size, mtime in ns and inode, in hex. A rename-published write always changes it. */
export function etagOf(st: BigIntStats): string {
  return `"${st.size.toString(16)}-${st.mtimeNs.toString(16)}-${st.ino.toString(16)}"`;
}

export function identity(st: BigIntStats): string {
  return `${st.size}:${st.mtimeNs}:${st.ino}`;
}

/**
 * How the file `st` relates to the one a sidecar recorded as `id`:
 * - `same`: the very file (size, mtime to the nanosecond, inode);
 * - `copy`: another inode with the same size and the same mtime to the second —
 *   what `cp -a`, `rsync -a`, tar, a Dockerfile `COPY` and overlay layers keep
 *   (tar and some filesystems keep whole seconds only). Its bytes are trusted
 *   once they match the sidecar's checksum;
 * - `other`: anything else, including the same inode with another mtime (an
 *   edit in place).
 */
function matchIdentity(id: string, st: BigIntStats): 'same' | 'copy' | 'other' {
  const m = /^(\d+):(\d+):(\d+)$/.exec(id);
  if (!m || BigInt(m[1]!) !== st.size) return 'other';
  const mtimeNs = BigInt(m[2]!);
  const ino = BigInt(m[3]!);
  if (ino === st.ino) return mtimeNs === st.mtimeNs ? 'same' : 'other';
  return mtimeNs / NS_PER_S === st.mtimeNs / NS_PER_S ? 'copy' : 'other';
}

const NS_PER_S = 1_000_000_000n;

/**
 * How the file `st` relates to the one `side` describes (see matchIdentity). A
 * copy counts only where the sidecar records a checksum to check it against
 * (bake and warm record one by default): size and mtime alone cannot tell a
 * copy from a file another program wrote in the same second.
 */
export function sidecarMatch(side: Sidecar | undefined, st: BigIntStats): 'same' | 'copy' | 'other' {
  if (!side) return 'other';
  const match = matchIdentity(side.id, st);
  return match === 'copy' && !side.checksum ? 'other' : match;
}
