// The contestants of the cold-fill suite: each copies one S3 object into a
// fresh local file and resolves to that file's path.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { CREDENTIALS, REGION, s3Client } from './s3-env.mjs';

const MiB = 1024 * 1024;

/** The environment of a peer CLI: our credentials, nothing from the user's setup that could change its behaviour. */
function cliEnv(extra) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith('AWS_') || k.startsWith('RCLONE_')) delete env[k];
  }
  return { ...env, ...extra };
}

function runCli(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.once('error', reject);
    p.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`)),
    );
  });
}

/**
 * `aws s3 cp` with its transfer settings in a config file of our own (not the
 * user's ~/.aws). Defaults of the CLI: 10 concurrent requests of 8 MiB.
 * `recursive`: `key` is a prefix (ending in '/'), copied into the folder `dest`.
 */
export async function awsCp({
  aws,
  endpoint,
  bucket,
  key,
  dest,
  scratch,
  concurrency = 10,
  chunk = '8MB',
  recursive = false,
}) {
  const config = join(scratch, `aws-config-${concurrency}-${chunk}`);
  await writeFile(
    config,
    `[default]\nregion = ${REGION}\ns3 =\n  max_concurrent_requests = ${concurrency}\n  multipart_chunksize = ${chunk}\n  multipart_threshold = ${chunk}\n`,
  );
  await runCli(
    aws,
    [
      's3',
      'cp',
      `s3://${bucket}/${key}`,
      dest,
      '--endpoint-url',
      endpoint,
      '--no-progress',
      '--only-show-errors',
      ...(recursive ? ['--recursive'] : []),
    ],
    cliEnv({
      AWS_CONFIG_FILE: config,
      AWS_SHARED_CREDENTIALS_FILE: join(scratch, 'no-credentials'),
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: 'true',
    }),
  );
  return dest;
}

/**
 * `rclone copyto` from a remote configured by environment only. Defaults: 4 streams past 250 MiB.
 * `recursive`: `rclone copy` of the prefix `key` into the folder `dest` (4 transfers at once by default).
 */
export async function rcloneCopy({
  rclone,
  endpoint,
  bucket,
  key,
  dest,
  scratch,
  streams,
  recursive = false,
}) {
  const args = [
    recursive ? 'copy' : 'copyto',
    `bench:${bucket}/${key}`,
    dest,
    '--config',
    join(scratch, 'no-rclone.conf'),
  ];
  if (streams) args.push('--multi-thread-streams', String(streams));
  await runCli(
    rclone,
    args,
    cliEnv({
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
      RCLONE_CONFIG_BENCH_ENDPOINT: endpoint,
      RCLONE_CONFIG_BENCH_REGION: REGION,
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
    }),
  );
  return dest;
}

function opendalOperator(opendal, endpoint, bucket) {
  return new opendal.Operator('s3', {
    bucket,
    endpoint,
    region: REGION,
    access_key_id: CREDENTIALS.accessKeyId,
    secret_access_key: CREDENTIALS.secretAccessKey,
    disable_config_load: 'true',
    disable_ec2_metadata: 'true',
  });
}

/** opendal's buffered `read` (the whole object in one Buffer), then one file write. */
export async function opendalRead({ opendal, endpoint, bucket, key, dest, concurrent, chunk = 8 * MiB }) {
  const op = opendalOperator(opendal, endpoint, bucket);
  const opts = concurrent ? { concurrent, chunk } : undefined;
  let buf = await op.read(key, opts);
  await writeFile(dest, buf);
  buf = null;
  return dest;
}

/** opendal's streaming `reader` with concurrent chunks, copied to the file through one reused buffer. */
export async function opendalReader({
  opendal,
  endpoint,
  bucket,
  key,
  dest,
  concurrent,
  chunk = 8 * MiB,
  prefetch,
}) {
  const op = opendalOperator(opendal, endpoint, bucket);
  const reader = await op.reader(key, { concurrent, chunk, ...(prefetch ? { prefetch } : {}) });
  const fh = await open(dest, 'w');
  try {
    const buf = Buffer.allocUnsafe(chunk);
    let at = 0;
    for (;;) {
      const n = Number(await reader.read(buf));
      if (n === 0) break;
      await fh.write(buf, 0, n, at);
      at += n;
    }
  } finally {
    await fh.close();
  }
  return dest;
}

/** One GetObject with the plain AWS SDK, its body piped to the file. */
export async function sdkSingleStream({ endpoint, bucket, key, dest }) {
  const client = s3Client(endpoint);
  try {
    const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    await pipeline(res.Body, createWriteStream(dest, { highWaterMark: 1 * MiB }));
  } finally {
    client.destroy();
  }
  return dest;
}

/**
 * The ceiling probe: plain node:http ranged GETs (anonymous: s3rver serves
 * unsigned reads), `concurrency` at a time. Each part is gathered into its
 * worker's reused buffer and written at its offset with one positioned write
 * (many 64 KiB writes would measure the thread pool, not the transfer). No SDK,
 * no checks beyond the byte count: what the transfer path allows. A part that
 * fails (a keep-alive socket closed under us) is fetched again, at most twice.
 */
export async function rangedGetProbe({ endpoint, bucket, key, dest, size, concurrency, partSize = 8 * MiB }) {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const url = new URL(`${endpoint}/${bucket}/${key}`);
  const fh = await open(dest, 'w');
  let next = 0;
  const getPart = (offset, length, buf) =>
    new Promise((resolve, reject) => {
      const req = request(
        url,
        { agent, headers: { range: `bytes=${offset}-${offset + length - 1}` } },
        (res) => {
          if (res.statusCode !== 206 && res.statusCode !== 200) {
            res.resume();
            reject(new Error(`ranged GET: HTTP ${res.statusCode}`));
            return;
          }
          let got = 0;
          res.on('data', (chunk) => {
            if (got + chunk.length > length) {
              res.destroy(new Error('ranged GET: longer body than asked for'));
              return;
            }
            chunk.copy(buf, got);
            got += chunk.length;
          });
          res.once('error', reject);
          res.once('end', () =>
            got === length ? resolve() : reject(new Error(`ranged GET: ${got} of ${length} bytes`)),
          );
        },
      );
      req.once('error', reject);
      req.end();
    });
  const worker = async () => {
    const buf = Buffer.allocUnsafe(partSize);
    while (next < size) {
      const offset = next;
      next += partSize;
      const length = Math.min(partSize, size - offset);
      for (let attempt = 1; ; attempt++) {
        try {
          await getPart(offset, length, buf);
          break;
        } catch (err) {
          if (attempt >= 3) throw err;
        }
      }
      await fh.write(buf, 0, length, offset);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    await fh.close();
    agent.destroy();
  }
  return dest;
}
