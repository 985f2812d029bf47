// tierkit as a contestant. Kept small and separate so the stack's settings can
// be tuned here without touching the suites.
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createStack } from '@tierkit/tier-core';
import { createFsTier } from '@tierkit/tier-fs';
import { createS3Tier, resolveOptions } from '@tierkit/tier-s3';
import { CREDENTIALS, REGION } from './s3-env.mjs';

/** S3 tier settings used by the bench (tier-s3's defaults unless set here). */
export const S3_OPTIONS = {};
/** fs tier settings used by the bench (tier-fs's defaults unless set here). */
export const FS_OPTIONS = {};
/** Stack settings used by the bench (tier-core's defaults unless set here: 8 MiB blocks, 8 spans of up to 64 MiB at once, 2 pieces of 8 MiB each in flight). */
export const STACK_OPTIONS = {};

function s3Options(endpoint, bucket, extra) {
  return {
    bucket,
    endpoint,
    region: REGION,
    forcePathStyle: true,
    credentials: { ...CREDENTIALS },
    ...S3_OPTIONS,
    ...extra,
  };
}

/** The most parallel ranged GETs the S3 tier uses for one read, as configured here. */
export function s3Concurrency(extra = {}) {
  return resolveOptions(s3Options('http://127.0.0.1:1', 'bench', extra)).concurrency;
}

/**
 * Cold fill: a stack [fs cache at `cacheDir`, S3 origin] reads `key` through,
 * completely, so that it ends up in the cache. Modes:
 * - `fill`: `stack.fill(key)`, what pre-warming does: the object lands in the
 *   cache and nothing is read back;
 * - `stream`: `readStream` drained, as a consumer would (bounded memory);
 * - `readInto`: one whole-object `readInto` a buffer of the object's size
 *   (allocated per call, as a loader of weights into memory would).
 * The stack publishes the cached copy when its last block is in, for a stream
 * just after it ends; the timed part lasts until the cache serves the copy.
 * Returns the path of the cached copy (a plain file at its key under the root).
 */
export async function tierkitColdFill({
  endpoint,
  bucket,
  key,
  cacheDir,
  mode = 'stream',
  s3 = {},
  fs = {},
  stack: stackOptions = {},
  timeoutMs = 120_000,
}) {
  const cache = createFsTier({ root: cacheDir, name: 'cache', ...FS_OPTIONS, ...fs });
  const origin = createS3Tier(s3Options(endpoint, bucket, { name: 'origin', ...s3 }));
  // The stack absorbs a failed promotion or publish (it still serves the bytes): keep the reason.
  const warnings = [];
  const stack = createStack([cache, origin], {
    name: 'bench',
    ...STACK_OPTIONS,
    ...stackOptions,
    onWarning: (w) => warnings.push(w),
  });
  const why = () => warnings.map((w) => `${w.op} into ${w.tier}: ${w.error?.message ?? w.error}`).join('; ');
  try {
    if (mode === 'fill') {
      if (!(await stack.fill(key))) throw new Error(`tierkit: ${key} not found`);
    } else if (mode === 'readInto') {
      const meta = await stack.stat(key);
      if (!meta) throw new Error(`tierkit: ${key} not found`);
      const n = await stack.readInto(key, Buffer.allocUnsafe(meta.size));
      if (n !== meta.size) throw new Error(`tierkit: readInto returned ${n} of ${meta.size} bytes`);
    } else {
      const stream = await stack.readStream(key);
      if (!stream) throw new Error(`tierkit: ${key} not found`);
      for await (const _ of stream);
    }
    const deadline = Date.now() + timeoutMs;
    while (!(await cache.stat(key))) {
      if (warnings.length > 0 || Date.now() > deadline) {
        throw new Error(`tierkit: the object did not reach the cache${warnings.length ? ` (${why()})` : ''}`);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  } finally {
    await stack.close();
  }
  return `${cacheDir}/${key}`;
}

/**
 * A diagnostic, not a cache fill: the S3 tier alone, its `readStream` piped to
 * a plain file. Set against the stack's rows it splits the time between the
 * origin read and the cache write.
 */
export async function s3TierToFile({ endpoint, bucket, key, dest, s3 = {} }) {
  const origin = createS3Tier(s3Options(endpoint, bucket, { name: 'origin', ...s3 }));
  try {
    const stream = await origin.readStream(key);
    if (!stream) throw new Error(`tierkit: ${key} not found`);
    await pipeline(stream, createWriteStream(dest, { highWaterMark: 1024 * 1024 }));
  } finally {
    await origin.close();
  }
  return dest;
}

/** Warm read: fills `target` (a buffer the caller reuses) from the fs tier at `root`. */
export function openFsTier(root, extra = {}) {
  return createFsTier({ root, name: 'cache', ...FS_OPTIONS, ...extra });
}
