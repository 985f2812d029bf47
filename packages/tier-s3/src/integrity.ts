/**
 * End-to-end checks of what a read fetched, against what the origin states
 * about the object: here, the MD5 that a single-part object's ETag is.
 *
 * S3 (and MinIO, Ceph RGW, s3rver) give a single-part upload the MD5 of its
 * bytes as ETag, except under SSE-KMS or SSE-C; multipart ETags (`"…-N"`) are
 * not a digest of the bytes. So a read that covers a whole single-part object
 * can be checked for free of round trips; a byte flipped in transit over plain
 * http (or by a broken proxy) then fails the check instead of being served.
 */
import { digestBytes, TierError } from '@tierkit/tier-core';

/** What a GET answer says about the object that bears on its ETag. */
export interface AnswerTraits {
  readonly ETag?: string | undefined;
  readonly ServerSideEncryption?: string | undefined;
  readonly SSECustomerAlgorithm?: string | undefined;
}

const MD5_ETAG = /^"?([0-9a-fA-F]{32})"?$/;

/** The object's MD5 (hex) when its ETag is one; undefined when the ETag is something else. */
export function etagMd5(a: AnswerTraits): string | undefined {
  const m = a.ETag ? MD5_ETAG.exec(a.ETag) : null;
  if (!m) return undefined;
  // Under SSE-KMS and SSE-C, S3's ETag is not the MD5 of the plaintext.
  if (a.SSECustomerAlgorithm || a.ServerSideEncryption?.startsWith('aws:kms')) return undefined;
  return m[1]!.toLowerCase();
}

/**
 * Throws INTEGRITY (restartable: a fresh read may succeed) when `bytes` do not
 * hash to `md5`. Hashed on tier-core's digest thread, off the event loop.
 */
export async function checkMd5(
  bytes: Uint8Array,
  md5: string,
  ctx: { key: string; tier: string },
): Promise<void> {
  const got = await digestBytes(bytes, { algorithm: 'md5' });
  if (got === md5) return;
  throw mismatchError(md5, got, ctx);
}

export function mismatchError(md5: string, got: string, ctx: { key: string; tier: string }): TierError {
  return new TierError(
    'INTEGRITY',
    `read '${ctx.key}': the bytes received do not match the object's MD5 (ETag ${md5}, got ${got})`,
    {
      key: ctx.key,
      tier: ctx.tier,
      retryable: false,
      details: { algorithm: 'md5', expected: md5, got, restartable: true },
    },
  );
}
