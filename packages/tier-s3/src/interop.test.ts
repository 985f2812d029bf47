/**
 * Objects written by other clients read byte-exact through tierkit, and the
 * other way round: the AWS SDK with no tierkit code, and the aws CLI if installed.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Tier } from './index.js';
import { LOCAL_S3_CREDENTIALS, type LocalS3, localS3ClientConfig, startLocalS3 } from './testing/index.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
let s3: LocalS3;
let tier: S3Tier;
let sdk: S3Client;

beforeAll(async () => {
  s3 = await startLocalS3({ buckets: ['interop'] });
  const { endpoint, credentials } = localS3ClientConfig(s3.endpoint);
  tier = new S3Tier({
    bucket: 'interop',
    prefix: 'x',
    endpoint,
    credentials,
    partSize: 256 * 1024,
    multipartThreshold: 5 * MiB,
    uploadPartSize: 5 * MiB,
  });
  sdk = new S3Client(localS3ClientConfig(s3.endpoint));
});
afterAll(async () => {
  sdk?.destroy();
  await tier?.close();
  await s3?.close();
});

async function* stream(bytes: Uint8Array, chunk: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.byteLength; at += chunk) yield bytes.subarray(at, at + chunk);
}

describe('interop with the plain AWS SDK', () => {
  it('reads what the SDK wrote', async () => {
    const data = patternBytes(3 * MiB + 5, 31);
    await sdk.send(new PutObjectCommand({ Bucket: 'interop', Key: 'x/from-sdk', Body: data }));
    expect(Buffer.compare((await tier.read('from-sdk'))!, data)).toBe(0);
    const part = await tier.read('from-sdk', { range: { offset: MiB, length: MiB + 1 } });
    expect(Buffer.compare(part!, data.subarray(MiB, 2 * MiB + 1))).toBe(0);
  });

  it('the SDK reads what tierkit wrote (PutObject and streamed multipart)', async () => {
    for (const [key, data] of [
      ['to-sdk-small', patternBytes(100_003, 32)],
      ['to-sdk-multipart', patternBytes(12 * MiB + 9, 33)],
    ] as const) {
      await tier.write(key, stream(data, 300_001));
      const res = await sdk.send(new GetObjectCommand({ Bucket: 'interop', Key: `x/${key}` }));
      const got = await res.Body!.transformToByteArray();
      expect(Buffer.compare(got, data), key).toBe(0);
    }
  });
});

const AWS = ['/usr/bin/aws', '/usr/local/bin/aws'].find((p) => existsSync(p));

describe.skipIf(!AWS)(
  `interop with the aws CLI (${AWS ?? 'not installed: apt-get install -y awscli'})`,
  () => {
    const env = {
      ...process.env,
      AWS_ACCESS_KEY_ID: LOCAL_S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: LOCAL_S3_CREDENTIALS.secretAccessKey,
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    };
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'tierkit-awscli-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('reads what `aws s3 cp` uploaded (multipart) and `aws s3 cp` downloads what tierkit wrote', async () => {
      const up = patternBytes(9 * MiB + 1, 41);
      await writeFile(join(dir, 'up.bin'), up);
      const endpoint = ['--endpoint-url', s3.endpoint];
      await run(AWS!, ['s3', 'cp', join(dir, 'up.bin'), 's3://interop/x/from-cli', ...endpoint], { env });
      expect(Buffer.compare((await tier.read('from-cli'))!, up)).toBe(0);

      const down = patternBytes(7 * MiB + 3, 42);
      await tier.write('to-cli', stream(down, 1_000_000));
      await run(AWS!, ['s3', 'cp', 's3://interop/x/to-cli', join(dir, 'down.bin'), ...endpoint], { env });
      expect(Buffer.compare(await readFile(join(dir, 'down.bin')), down)).toBe(0);
    }, 60_000);
  },
);
