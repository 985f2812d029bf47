/** Shared by this app's tests: an s3rver with the synthetic model seeded, and block arithmetic. */
import type { ByteRange } from '@tierkit/tier-core';
import { S3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import type { OriginConfig } from './rank.js';
import { seed } from './seed.js';
import type { SyntheticModel } from './synthetic.js';

export async function seededS3(model: SyntheticModel, prefix: string) {
  const server: LocalS3 = await startLocalS3({ buckets: ['models'] });
  const origin: OriginConfig = {
    bucket: 'models',
    prefix,
    endpoint: server.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  };
  const tier = s3Tier(server, prefix);
  await seed(tier, model);
  return { server, origin, tier };
}

export function s3Tier(server: LocalS3, prefix: string, name = 's3'): S3Tier {
  const { endpoint, credentials } = localS3ClientConfig(server.endpoint);
  return new S3Tier({ name, bucket: 'models', prefix, endpoint, credentials, forcePathStyle: true });
}

/** Bytes of the blocks of `blockSize` that `ranges` touch in a `size`-byte object. */
export function blockBytes(ranges: readonly ByteRange[], size: number, blockSize: number): number {
  const blocks = new Set<number>();
  for (const r of ranges) {
    const len = r.length ?? size - r.offset;
    if (len === 0) continue;
    for (let b = Math.floor(r.offset / blockSize); b <= Math.floor((r.offset + len - 1) / blockSize); b++) {
      blocks.add(b);
    }
  }
  let n = 0;
  for (const b of blocks) n += Math.min(blockSize, size - b * blockSize);
  return n;
}
