/**
 * What an S3 HEAD states about an object's bytes, as tier-core digests that a
 * fill checks before it publishes a copy:
 *
 * - the stored checksum S3 returns with checksum mode on (`x-amz-checksum-*`,
 *   base64, big-endian for CRCs): `FULL_OBJECT` is a digest of the bytes;
 *   `COMPOSITE` (`…-N`) is the digest of the N parts' digests, checkable once the
 *   part size is known;
 * - else the ETag where it is an MD5: 32 hex for a single-part upload, and
 *   `md5(part md5s)-N` for a multipart one (part size learned with a HEAD of
 *   part 1). Under SSE-KMS and SSE-C the ETag is no MD5 of the plaintext and is
 *   not used; `etagDigests: false` turns ETag checks off for servers with ETags
 *   of their own making.
 */
import type { DigestAlgorithm, ObjectDigest } from '@tierkit/tier-core';

/** The members of a HEAD (or GET) answer that bear on the object's digests. */
export interface DigestTraits {
  readonly ETag?: string | undefined;
  readonly ServerSideEncryption?: string | undefined;
  readonly SSECustomerAlgorithm?: string | undefined;
  readonly ChecksumCRC32?: string | undefined;
  readonly ChecksumCRC32C?: string | undefined;
  readonly ChecksumCRC64NVME?: string | undefined;
  readonly ChecksumSHA1?: string | undefined;
  readonly ChecksumSHA256?: string | undefined;
  readonly ChecksumType?: string | undefined;
}

const CHECKSUMS: readonly [keyof DigestTraits, DigestAlgorithm, number][] = [
  ['ChecksumCRC64NVME', 'crc64nvme', 8],
  ['ChecksumCRC32C', 'crc32c', 4],
  ['ChecksumCRC32', 'crc32', 4],
  ['ChecksumSHA256', 'sha256', 32],
  ['ChecksumSHA1', 'sha1', 20],
];

const MD5_ETAG = /^"?([0-9a-fA-F]{32})(?:-(\d+))?"?$/;

/** A stated checksum (`base64` or `base64-N`) as a digest; undefined when malformed. */
function checksumDigest(raw: string, algorithm: DigestAlgorithm, bytes: number, type: string | undefined) {
  const m = /^([A-Za-z0-9+/]+={0,2})(?:-(\d+))?$/.exec(raw.trim());
  if (!m) return undefined;
  const value = Buffer.from(m[1]!, 'base64');
  if (value.byteLength !== bytes) return undefined;
  const parts = m[2] !== undefined ? Number(m[2]) : undefined;
  // A composite checksum without "-N" (some stores) gives no part count: not checkable.
  if (type === 'COMPOSITE' && parts === undefined) return undefined;
  const d: ObjectDigest = {
    algorithm,
    value: value.toString('hex'),
    from: 'checksum',
    ...(parts !== undefined && parts >= 1 ? { parts } : {}),
  };
  return d;
}

/** The digests an answer states, best first (see tier-core's chooseDigest). */
export function statedDigests(a: DigestTraits, etagDigests: boolean): ObjectDigest[] {
  const out: ObjectDigest[] = [];
  for (const [member, algorithm, bytes] of CHECKSUMS) {
    const raw = a[member];
    if (!raw) continue;
    const d = checksumDigest(raw, algorithm, bytes, a.ChecksumType);
    if (d) out.push(d);
  }
  const md5 = etagDigests ? etagDigest(a) : undefined;
  if (md5) out.push(md5);
  return out;
}

/** The ETag as an MD5 digest (whole, or of the parts' MD5s), where it is one. */
export function etagDigest(a: DigestTraits): ObjectDigest | undefined {
  const m = a.ETag ? MD5_ETAG.exec(a.ETag) : null;
  if (!m) return undefined;
  if (a.SSECustomerAlgorithm || a.ServerSideEncryption?.startsWith('aws:kms')) return undefined;
  const value = m[1]!.toLowerCase();
  if (m[2] === undefined) return { algorithm: 'md5', value, from: 'etag' };
  const parts = Number(m[2]);
  return parts >= 1 ? { algorithm: 'md5', value, parts, from: 'etag' } : undefined;
}

/**
 * The part size a HEAD of part 1 gives, if it is consistent with `parts` parts
 * of an object of `size` bytes (every part but the last of that size). A server
 * that ignores `partNumber` answers with the whole object: not consistent, so
 * nothing is learned (and nothing is checked against a guess).
 */
export function partSizeFrom(
  part1Length: number | undefined,
  partsCount: number | undefined,
  parts: number,
  size: number,
): number | undefined {
  if (part1Length === undefined || part1Length <= 0) return undefined;
  if (partsCount !== undefined && partsCount !== parts) return undefined;
  if (parts === 1) return part1Length === size ? part1Length : undefined;
  if (partsCount === undefined) return undefined;
  const consistent = part1Length * (parts - 1) < size && part1Length * parts >= size;
  return consistent ? part1Length : undefined;
}
