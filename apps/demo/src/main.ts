/**
 * The main job: a model that lives in object storage loads through a local
 * disk cache — slowly once, fast ever after.
 *
 *   npm run demo                       # 1 GiB model, embedded S3 server
 *   npm run demo -- --size 256MiB      # another size
 *   npm run demo -- --fresh            # drop the cache first (cold again)
 *   AWS_ENDPOINT_URL=http://minio:9000 TIERKIT_DEMO_BUCKET=models npm run demo   # a real store
 */
import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createStack, type MetricsTier, type Tier, withMetrics } from '@tierkit/tier-core';
import { createFsTier, parseSize } from '@tierkit/tier-fs';
import { createS3Tier } from '@tierkit/tier-s3';
import { LOCAL_S3_CREDENTIALS, startLocalS3 } from '@tierkit/tier-s3/testing';
import { formatBytes } from '@tierkit/warmer/progress';
import { modelBytes, modelSha256, planModel } from './model.js';
import { Progress } from './progress.js';

const USAGE = `tierkit demo: load a model from S3 through a local disk cache

Options:
  --size SIZE     model size (default 1GiB; e.g. 256MiB)
  --dir DIR       where the embedded S3 server and the cache keep their files (default .tierkit-demo)
  --fresh         empty the cache first, so the first load is cold
  --help          this text

A real S3-compatible store is used instead of the embedded one when AWS_ENDPOINT_URL or
TIERKIT_DEMO_BUCKET is set (credentials from the AWS SDK's default chain).`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: process.env.TIERKIT_DEMO_SIZE ?? '1GiB' },
      dir: { type: 'string', default: '.tierkit-demo' },
      fresh: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const size = parseSize('--size', values.size!);
  if (size < 1) throw new Error(`--size ${values.size} is too small`);
  const dir = resolve(values.dir!);
  const cacheDir = resolve(dir, 'cache');
  if (values.fresh) await rm(cacheDir, { recursive: true, force: true });
  await mkdir(cacheDir, { recursive: true });

  const model = planModel(size);
  const key = `models/demo-${size}/model.safetensors`;

  // — the origin —
  const real = process.env.AWS_ENDPOINT_URL !== undefined || process.env.TIERKIT_DEMO_BUCKET !== undefined;
  const bucket = process.env.TIERKIT_DEMO_BUCKET ?? 'tierkit-demo';
  let closeServer = async () => {};
  let s3: Tier;
  if (real) {
    const endpoint = process.env.AWS_ENDPOINT_URL;
    s3 = createS3Tier({ name: 's3', bucket, endpoint, forcePathStyle: endpoint !== undefined });
    console.log(`origin: s3://${bucket} at ${endpoint ?? 'AWS'}`);
  } else {
    const server = await startLocalS3({ directory: resolve(dir, 's3'), buckets: [bucket] });
    closeServer = () => server.close();
    s3 = createS3Tier({
      name: 's3',
      bucket,
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: LOCAL_S3_CREDENTIALS,
    });
    console.log(`origin: embedded S3 server (s3rver) at ${server.endpoint}, bucket ${bucket}`);
  }
  const origin = withMetrics()(s3) as MetricsTier;
  const cache = createFsTier({ name: 'nvme-cache', root: cacheDir });
  const stack = createStack([cache, origin]);

  try {
    // — seed once —
    const sumKey = `${key}.sha256`;
    let expected = (await s3.stat(key))?.size === model.size ? await s3.read(sumKey) : undefined;
    if (!expected) {
      console.log(`seeding ${key} (${formatBytes(model.size)}, ${model.tensors} tensors) …`);
      const progress = new Progress('upload', model.size);
      const counted = (async function* () {
        for await (const chunk of modelBytes(model)) {
          progress.add(chunk.byteLength);
          yield chunk;
        }
      })();
      await s3.write(key, counted, { size: model.size });
      progress.finish();
      expected = new TextEncoder().encode(await modelSha256(model));
      await s3.write(sumKey, expected);
    } else {
      console.log(`origin already holds ${key} (${formatBytes(model.size)})`);
    }
    const wantSha = new TextDecoder().decode(expected);
    const wasCached = (await cache.stat(key)) !== undefined;

    // — first load: cold unless a previous run left it cached —
    console.log(
      `\nfirst load (${wasCached ? 'warm: cached by an earlier run' : 'cold: from S3 into the cache'})`,
    );
    const buffer = new Uint8Array(model.size);
    const fetchedBefore = origin.metrics.bytesRead;
    const progress = new Progress('load', model.size);
    const stream = await stack.readStream(key);
    if (!stream) throw new Error(`${key} vanished from the origin`);
    const hash = createHash('sha256');
    let at = 0;
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      buffer.set(chunk, at);
      at += chunk.byteLength;
      hash.update(chunk);
      progress.add(chunk.byteLength);
    }
    progress.finish();
    const firstSeconds = progress.seconds;
    const firstSha = hash.digest('hex');
    const fetchedFirst = origin.metrics.bytesRead - fetchedBefore;

    // — second load: warm, straight into the buffer we already have —
    console.log('\nsecond load (warm: from the cache into a reused buffer)');
    buffer.fill(0);
    const t0 = process.hrtime.bigint();
    const n = await stack.readInto(key, buffer);
    const warmSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const warmSha = createHash('sha256')
      .update(buffer.subarray(0, n ?? 0))
      .digest('hex');
    const fetchedTotal = origin.metrics.bytesRead - fetchedBefore;
    console.log(`  ${formatBytes(n ?? 0)} in ${warmSeconds.toFixed(3)} s`);

    const ok = firstSha === wantSha && warmSha === wantSha && at === model.size && n === model.size;
    const mibs = (s: number) => `${(model.size / s / 1024 ** 2).toFixed(0)} MiB/s`;
    const rows: [string, string][] = [
      ['model', `${key} (${formatBytes(model.size)})`],
      [
        `first load (${wasCached ? 'warm' : 'cold'})`,
        `${firstSeconds.toFixed(2)} s  (${mibs(firstSeconds)})`,
      ],
      ['second load (warm)', `${warmSeconds.toFixed(3)} s  (${mibs(warmSeconds)})`],
      ['speed-up', `${(firstSeconds / warmSeconds).toFixed(1)}×`],
      [
        'fetched from origin',
        `${formatBytes(fetchedFirst)} on the first load, ${formatBytes(fetchedTotal - fetchedFirst)} on the second`,
      ],
      ['sha256', `${ok ? 'verified' : 'MISMATCH'} ${wantSha.slice(0, 16)}…`],
    ];
    let cached = 0;
    let cachedBytes = 0;
    for await (const m of cache.list()) {
      cached++;
      cachedBytes += m.size;
    }
    rows.push(['cache contents', `${cached} object(s), ${formatBytes(cachedBytes)} in ${cacheDir}`]);
    const width = Math.max(...rows.map((r) => r[0].length));
    console.log(`\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n')}`);
    const s = stack.stats();
    console.log(`  ${'served by tier'.padEnd(width)}  ${JSON.stringify(s.hitsByTier)}`);
    if (!ok) {
      process.exitCode = 1;
      console.error('\nthe bytes loaded do not match the model: this is a bug, please report it');
    } else if (!wasCached) {
      console.log('\nrun it again: the cache is warm from the start.');
    }
  } finally {
    await stack.close();
    await closeServer();
  }
}

main().catch((err) => {
  console.error(`tierkit demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
