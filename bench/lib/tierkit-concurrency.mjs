// Pieces of the concurrency suite shared by the bench process and its reader children.
import { Readable } from 'node:stream';
import { createS3Tier } from '@tierkit/tier-s3';
import { CREDENTIALS, REGION } from './s3-env.mjs';
import { S3_OPTIONS } from './tierkit-contestants.mjs';

export function s3OriginTier(endpoint, bucket) {
  return createS3Tier({
    bucket,
    endpoint,
    region: REGION,
    forcePathStyle: true,
    credentials: { ...CREDENTIALS },
    name: 'origin',
    ...S3_OPTIONS,
  });
}

/**
 * The origin tier with every byte it hands out counted in `counter.bytes`
 * (readStream, read, readInto): what the stack fetched from the origin.
 */
export function countingTier(tier, counter) {
  return new Proxy(tier, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (prop === 'readStream') {
        return async (...args) => {
          const s = await target.readStream(...args);
          if (!s) return s;
          return Readable.from(
            (async function* () {
              try {
                for await (const c of s) {
                  counter.bytes += c.byteLength;
                  yield c;
                }
              } finally {
                s.destroy();
              }
            })(),
            { objectMode: false },
          );
        };
      }
      if (prop === 'read') {
        return async (...args) => {
          const out = await target.read(...args);
          counter.bytes += out?.byteLength ?? 0;
          return out;
        };
      }
      if (prop === 'readInto') {
        return async (...args) => {
          const n = await target.readInto(...args);
          counter.bytes += n ?? 0;
          return n;
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
