/**
 * A sharded model from S3 through [fs cache, s3], loaded tensor by tensor
 * as N tensor-parallel ranks in N processes sharing one cache directory:
 * cold (each rank fetches only the blocks its slices occupy, once per node),
 * then warm (nothing from the origin).
 *
 *   tierkit-model-loader                          # 256 MiB model, 2 ranks, embedded S3 server
 *   tierkit-model-loader --ranks 4 --size 1GiB
 *   AWS_ENDPOINT_URL=http://minio:9000 tierkit-model-loader --bucket models
 */
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseSize } from '@tierkit/tier-fs';
import { S3Tier } from '@tierkit/tier-s3';
import { LOCAL_S3_CREDENTIALS, startLocalS3 } from '@tierkit/tier-s3/testing';
import { formatBytes } from '@tierkit/warmer/progress';
import { type OriginConfig, type RankJob, type RankReport, runRank } from './rank.js';
import { isSeeded, seed } from './seed.js';
import { planModel } from './synthetic.js';

const USAGE = `tierkit-model-loader: a sharded model from S3, loaded by N tensor-parallel ranks through one local cache

Options:
  --size SIZE          model size (default 256MiB)
  --shards N           safetensors shards (default 4)
  --ranks N            ranks, one process each (default 2)
  --format F           safetensors, gguf or both (default both)
  --block-size SIZE    cache block size (default 8MiB)
  --max-in-flight SIZE bytes of tensors each rank holds at once (default 256MiB)
  --dir DIR            where the embedded S3 server and the cache live (default .tierkit-model-loader)
  --endpoint URL       an S3-compatible endpoint instead of the embedded server (or AWS_ENDPOINT_URL)
  --bucket NAME        bucket (default tierkit-models)
  --cache-per-rank     give each rank its own cache, as if each ran on its own node
  --fresh              empty the cache first, so the first load is cold
  --no-verify          skip checking each tensor against the generator
  --json               print the reports as JSON
  --help               this text`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '256MiB' },
      shards: { type: 'string', default: '4' },
      ranks: { type: 'string', default: '2' },
      format: { type: 'string', default: 'both' },
      'block-size': { type: 'string', default: '8MiB' },
      'max-in-flight': { type: 'string', default: '256MiB' },
      dir: { type: 'string', default: '.tierkit-model-loader' },
      endpoint: { type: 'string', default: process.env.AWS_ENDPOINT_URL },
      bucket: { type: 'string', default: 'tierkit-models' },
      fresh: { type: 'boolean', default: false },
      'cache-per-rank': { type: 'boolean', default: false },
      'no-verify': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      worker: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.worker !== undefined) {
    // A rank's process: the job comes as JSON, the report goes back as the last line.
    const report = await runRank(JSON.parse(values.worker) as RankJob);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return;
  }
  const size = sizeFlag('--size', values.size!);
  const ranks = positive('--ranks', values.ranks!);
  const shards = positive('--shards', values.shards!);
  const format = values.format!;
  if (!['safetensors', 'gguf', 'both'].includes(format))
    throw new Error(`--format must be safetensors, gguf or both`);
  const formats = (format === 'both' ? ['safetensors', 'gguf'] : [format]) as RankJob['formats'];
  const dir = resolve(values.dir!);
  const cacheDir = resolve(dir, 'cache');
  if (values.fresh) await rm(cacheDir, { recursive: true, force: true });
  await mkdir(cacheDir, { recursive: true });
  const log = values.json ? () => {} : (s: string) => console.log(s);

  const model = planModel(size, shards, formats.includes('gguf'));
  const prefix = `models/synthetic-${size}-${shards}`;
  let origin: OriginConfig;
  let closeServer = async () => {};
  if (values.endpoint === undefined && process.env.TIERKIT_MODEL_BUCKET === undefined) {
    const server = await startLocalS3({ directory: resolve(dir, 's3'), buckets: [values.bucket!] });
    closeServer = () => server.close();
    origin = {
      bucket: values.bucket!,
      prefix,
      endpoint: server.endpoint,
      region: 'us-east-1',
      credentials: { ...LOCAL_S3_CREDENTIALS },
    };
    log(`origin: embedded S3 server (s3rver) at ${server.endpoint}, s3://${values.bucket}/${prefix}`);
  } else {
    origin = {
      bucket: process.env.TIERKIT_MODEL_BUCKET ?? values.bucket!,
      prefix,
      endpoint: values.endpoint,
    };
    log(`origin: s3://${origin.bucket}/${prefix} at ${values.endpoint ?? 'AWS'}`);
  }
  try {
    const s3 = new S3Tier({
      name: 's3',
      bucket: origin.bucket,
      prefix,
      endpoint: origin.endpoint,
      region: origin.region,
      forcePathStyle: origin.endpoint !== undefined,
      credentials: origin.credentials ? { ...origin.credentials } : undefined,
    });
    if (!(await isSeeded(s3, model))) {
      log(
        `seeding ${formatBytes(model.size)}: ${model.shards.length} shards + index${model.gguf ? ' + GGUF' : ''} …`,
      );
      await seed(s3, model, (name) => log(`  ${name}`));
    } else log(`origin already holds the model (${formatBytes(model.size)})`);
    await s3.close();

    const job = (rank: number): RankJob => ({
      origin,
      cacheDir: values['cache-per-rank'] ? resolve(cacheDir, `rank-${rank}`) : cacheDir,
      blockSize: sizeFlag('--block-size', values['block-size']!),
      rank,
      worldSize: ranks,
      formats,
      maxBytesInFlight: sizeFlag('--max-in-flight', values['max-in-flight']!),
      verify: !values['no-verify'],
    });
    const passes: { name: string; reports: RankReport[] }[] = [];
    for (const pass of ['first load', 'second load']) {
      const caches = values['cache-per-rank'] ? 'a cache each (one node per rank)' : 'one shared cache';
      log(`\n${pass}: ${ranks} rank(s), one process each, ${caches} in ${cacheDir}`);
      const reports = await Promise.all(Array.from({ length: ranks }, (_, r) => runWorker(job(r))));
      passes.push({ name: pass, reports });
      if (!values.json) printPass(reports, model.size);
    }
    if (values.json) console.log(JSON.stringify({ modelBytes: model.size, passes }));
    const bad = passes.flatMap((p) => p.reports.flatMap((r) => r.mismatches));
    if (bad.length > 0) {
      process.exitCode = 1;
      console.error(`tensors that do not match the model: ${bad.slice(0, 5).join(', ')}`);
    }
  } finally {
    await closeServer();
  }
}

/** A size flag (`256MiB`, `1G`, bytes), read as the tierkit CLI reads sizes; at least one byte. */
function sizeFlag(name: string, v: string): number {
  const n = parseSize(name, v);
  if (n < 1) throw new Error(`${name} must be at least 1 byte, got '${v}'`);
  return n;
}

function positive(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a whole number ≥ 1, got '${v}'`);
  return n;
}

function runWorker(job: RankJob): Promise<RankReport> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [self, '--worker', JSON.stringify(job)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      err += c;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const last = out.trim().split('\n').at(-1);
      if (code !== 0 || !last) reject(new Error(`rank ${job.rank} failed (exit ${code}): ${err.trim()}`));
      else resolvePromise(JSON.parse(last) as RankReport);
    });
  });
}

function printPass(reports: RankReport[], modelBytes: number): void {
  const rows = [['rank', 'tensors', 'received', 'from origin', 'time', 'check']];
  for (const r of reports) {
    rows.push([
      `${r.rank}/${r.worldSize}`,
      String(r.tensors),
      formatBytes(r.bytesReceived),
      formatBytes(r.originBytes),
      `${r.seconds.toFixed(2)} s`,
      r.verified ? 'verified' : r.mismatches.length > 0 ? `${r.mismatches.length} MISMATCHED` : 'not checked',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const row of rows) console.log(`  ${row.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`);
  const origin = reports.reduce((n, r) => n + r.originBytes, 0);
  console.log(
    `  origin sent ${formatBytes(origin)} in all (${((100 * origin) / modelBytes).toFixed(0)}% of the ${formatBytes(modelBytes)} model)`,
  );
}

main().catch((err) => {
  console.error(`tierkit-model-loader failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
