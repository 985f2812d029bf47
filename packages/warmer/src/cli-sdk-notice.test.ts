import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createS3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, tierkit } from './cli-harness.js';

const major = Number(process.versions.node.split('.')[0]);
let s3: LocalS3;
let work: string;

beforeAll(async () => {
  await ensureBuilt();
  work = await mkdtemp(join(tmpdir(), 'tierkit-sdk-notice-'));
  s3 = await startLocalS3({ buckets: ['notice'] });
  const writer = createS3Tier({ bucket: 'notice', ...localS3ClientConfig(s3.endpoint) });
  await writer.write('m/config.json', new TextEncoder().encode('{}'));
  await writer.close();
}, 120_000);
afterAll(async () => {
  await s3?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('tierkit warm on stderr', () => {
  // The AWS SDK only says it on Node < 22 (where the check is meaningful).
  it.skipIf(major >= 22)(
    "carries no AWS SDK NodeVersionSupportWarning, and the run's own lines",
    async () => {
      const origin = `s3://notice?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true`;
      const r = await tierkit(['warm', '--cache', join(work, 'cache'), '--origin', origin, 'm/']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/NodeVersionSupportWarning|AWS SDK for JavaScript/);
      expect(`${r.stdout}${r.stderr}`).toMatch(/1 fetched/);
    },
  );
});
