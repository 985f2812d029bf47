/**
 * Which of an origin's stated digests a fill checks, and what a mismatch says.
 */
import type { DigestSpec } from './digest-kit.js';
import { TierError } from './errors.js';
import type { DigestAlgorithm, ObjectDigest } from './tier.js';

const ALGORITHMS: ReadonlySet<string> = new Set(['md5', 'sha1', 'sha256', 'crc32', 'crc32c', 'crc64nvme']);

/** Whether `d` can be checked as it stands (known algorithm; a per-part one with its part size). */
export function checkable(d: ObjectDigest): boolean {
  if (!ALGORITHMS.has(d.algorithm) || !/^[0-9a-f]+$/.test(d.value)) return false;
  if (d.parts === undefined) return true;
  return d.partSize !== undefined && d.partSize > 0 && d.parts >= 1;
}

/**
 * The one stated digest to check: a stored checksum before an ETag taken as MD5
 * (the checksum is a promise; the ETag a convention), whole before per part.
 */
export function chooseDigest(stated: readonly ObjectDigest[]): ObjectDigest | undefined {
  const ok = stated.filter(checkable);
  const rank = (d: ObjectDigest) => (d.from === 'etag' ? 2 : 0) + (d.parts !== undefined ? 1 : 0);
  return ok.sort((a, b) => rank(a) - rank(b))[0];
}

export function specOf(d: ObjectDigest): DigestSpec {
  return d.parts !== undefined && d.partSize
    ? { algorithm: d.algorithm, partSize: d.partSize }
    : { algorithm: d.algorithm };
}

/** The specs a fill computes: the checked digest, and whole-object digests asked for (sha256 for `verify`). */
export function specsFor(check: ObjectDigest | undefined, tracked: readonly DigestAlgorithm[]): DigestSpec[] {
  const specs: DigestSpec[] = check ? [specOf(check)] : [];
  for (const algorithm of tracked) {
    if (!specs.some((s) => s.algorithm === algorithm && s.partSize === undefined)) specs.push({ algorithm });
  }
  return specs;
}

export function digestOf(spec: DigestSpec, value: string, size: number): ObjectDigest {
  if (!spec.partSize) return { algorithm: spec.algorithm, value };
  const parts = Math.max(1, Math.ceil(size / spec.partSize));
  return { algorithm: spec.algorithm, value, parts, partSize: spec.partSize };
}

/** INTEGRITY for bytes that do not match what the origin states (restartable: a fresh read may succeed). */
export function mismatch(
  ctx: { key: string; tier: string },
  expected: ObjectDigest,
  got: readonly string[],
  attempts: number,
): TierError {
  const consistent = got.every((g) => g === got[0]);
  const what =
    expected.parts !== undefined
      ? `per-part ${expected.algorithm} (${expected.parts} parts)`
      : expected.algorithm;
  let why = `after ${attempts} fetch${attempts === 1 ? '' : 'es'}`;
  if (expected.from === 'etag' && consistent && attempts > 1) {
    // The same bytes every time: more likely an ETag that is no MD5 than a broken network.
    why += `, the same bytes every time — the origin's ETag may not be an MD5 of the bytes (a server that does not use MD5 ETags: turn ETag checks off, e.g. tier-s3's etagDigests: false)`;
  }
  return new TierError(
    'INTEGRITY',
    `fill of '${ctx.key}' from '${ctx.tier}': the bytes do not match the object's ${what} ` +
      `(${expected.from === 'etag' ? 'from its ETag' : 'stated by the origin'}: ${expected.value}, got ${got[got.length - 1]}) ${why}`,
    {
      key: ctx.key,
      tier: ctx.tier,
      retryable: false,
      details: {
        algorithm: expected.algorithm,
        expected: expected.value,
        got: got[got.length - 1],
        from: expected.from ?? 'checksum',
        attempts,
        consistent,
        restartable: true,
      },
    },
  );
}
