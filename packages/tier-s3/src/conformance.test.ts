import { runTierConformance } from '@tierkit/tier-core/testing';
import * as vitest from 'vitest';
import { S3Tier } from './index.js';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from './testing/index.js';

let s3: LocalS3;
vitest.beforeAll(async () => {
  s3 = await startLocalS3({ buckets: ['conformance'] });
});
vitest.afterAll(async () => {
  await s3?.close();
});

let n = 0;
function subject(extra: Partial<ConstructorParameters<typeof S3Tier>[0]> = {}) {
  const { endpoint, credentials } = localS3ClientConfig(s3.endpoint);
  // A fresh prefix per tier: each starts empty, as the suite expects.
  const tier = new S3Tier({
    bucket: 'conformance',
    prefix: `run-${process.pid}-${++n}`,
    endpoint,
    credentials,
    ...extra,
  });
  return { tier, cleanup: () => tier.close() };
}

runTierConformance(vitest, { name: 's3 (defaults: direct GETs)', create: () => subject() });
runTierConformance(vitest, {
  name: 's3 (GETs through the SDK)',
  create: () => subject({ directGets: false }),
});
// Small parts: the large round trip becomes many parallel ranged GETs and a multipart upload.
runTierConformance(vitest, {
  name: 's3 (1 MiB read parts, multipart writes)',
  create: () =>
    subject({
      partSize: 1024 * 1024,
      multipartThreshold: 1024 * 1024,
      uploadPartSize: 5 * 1024 * 1024,
      listPageSize: 2,
    }),
  largeSize: 11 * 1024 * 1024 + 3,
});
