// Cold fill over https: one object in s3rver serving TLS (a certificate made for
// the run with openssl) and, on the same files, plain http; tierkit's fill over
// both, its SDK path over https, and `aws s3 cp` over the same https endpoint,
// side by side in one run. Also the cost of the end-to-end MD5 check on a
// whole-object read (the S3 tier alone, verify on and off).
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createS3Tier } from '@tierkit/tier-s3';
import { makeTestCert, startLocalS3 } from '@tierkit/tier-s3/testing';
import { collect, scratchDir, verifyFile } from '../lib/data.mjs';
import { recordsJson, resultsTable, rounds, targetsTable, throughput } from '../lib/measure.mjs';
import { findPeers, peersMarkdown } from '../lib/peers.mjs';
import { CREDENTIALS, REGION, startS3WithObject } from '../lib/s3-env.mjs';
import { tierkitColdFill } from '../lib/tierkit-contestants.mjs';
import { GiB, MiB } from '../stats.mjs';

export const name = 's3-https-fill';
export const title =
  'Cold fill over https: tierkit (direct TLS GETs) vs aws s3 cp, and vs its own plain-http fill';

const BUCKET = 'bench';
const KEY = 'models/cold-tls.bin';

/** The shared test certificate (tier-s3's testing helper), its PEM also in a file for `AWS_CA_BUNDLE`; undefined without openssl. */
async function makeCert(dir) {
  const tls = await makeTestCert();
  if (!tls) return undefined;
  const certFile = join(dir, 'cert.pem');
  await writeFile(certFile, tls.cert);
  return { ...tls, certFile };
}

/** `aws s3 cp` over https, trusting the run's certificate through AWS_CA_BUNDLE. */
async function awsCpTls({ aws, endpoint, dest, scratch, caFile }) {
  const config = join(scratch, 'aws-config-tls');
  await writeFile(config, `[default]\nregion = ${REGION}\n`);
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AWS_')) delete env[k];
  Object.assign(env, {
    AWS_CONFIG_FILE: config,
    AWS_SHARED_CREDENTIALS_FILE: join(scratch, 'no-credentials'),
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CA_BUNDLE: caFile,
  });
  const args = ['s3', 'cp', `s3://${BUCKET}/${KEY}`, dest, '--endpoint-url', endpoint, '--no-progress'];
  await new Promise((resolve, reject) => {
    const p = spawn(aws, [...args, '--only-show-errors'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.once('error', reject);
    p.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`aws exited ${code}: ${err.slice(-2000)}`)),
    );
  });
  return dest;
}

export default async function httpsFill(ctx) {
  const { quick, log } = ctx;
  const size = Number(process.env.BENCH_S3_MIB || (quick ? 128 : 1024)) * MiB;
  const runs = Number(process.env.BENCH_RUNS || (quick ? 3 : 5));
  const peers = findPeers(log);
  const scratch = await scratchDir('s3-tls');
  const tls = await makeCert(scratch.dir);
  if (!tls) {
    await scratch.cleanup();
    return { markdown: 'Skipped: openssl is not installed (no certificate for the https server).', data: {} };
  }
  const directory = join(scratch.dir, 's3rver');
  const plain = await startS3WithObject({ directory, bucket: BUCKET, key: KEY, size });
  // The same files, served over TLS by a second s3rver process.
  const secure = await startLocalS3({ directory, tls });
  log(`object ${size / MiB} MiB, ${runs} runs; http ${plain.endpoint}, https ${secure.endpoint}`);
  try {
    let seq = 0;
    const fresh = (label) => join(scratch.dir, `out-${label}-${seq++}`);
    const list = [];
    const tk = (id, label, endpoint, s3 = {}) => {
      let cacheDir;
      list.push({
        id,
        label,
        run: async () => {
          cacheDir = fresh(id);
          const t0 = process.hrtime.bigint();
          const file = await tierkitColdFill({
            endpoint,
            bucket: BUCKET,
            key: KEY,
            cacheDir,
            mode: 'fill',
            s3,
          });
          const s = Number(process.hrtime.bigint() - t0) / 1e9;
          await verifyFile(file, size);
          return s;
        },
        after: async () => {
          if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
          cacheDir = undefined;
        },
      });
    };
    tk('tierkit-https', 'tierkit: stack [fs, s3] fill() over https (direct TLS GETs)', secure.endpoint, {
      ca: tls.cert,
    });
    tk('tierkit-http', 'tierkit: stack [fs, s3] fill() over plain http (direct GETs)', plain.endpoint);
    tk(
      'tierkit-https-sdk',
      'tierkit: fill() over https through the SDK (directGets: false)',
      secure.endpoint,
      {
        ca: tls.cert,
        directGets: false,
      },
    );
    if (peers.aws) {
      let path;
      list.push({
        id: 'aws-https',
        label: 'aws s3 cp over https (defaults: 10 × 8 MiB)',
        run: async () => {
          const dest = fresh('aws');
          const t0 = process.hrtime.bigint();
          path = await awsCpTls({
            aws: peers.aws,
            endpoint: secure.endpoint,
            dest,
            scratch: scratch.dir,
            caFile: tls.certFile,
          });
          const s = Number(process.hrtime.bigint() - t0) / 1e9;
          await verifyFile(path, size);
          return s;
        },
        after: async () => {
          if (path) await rm(path, { force: true });
          path = undefined;
        },
      });
    }
    // The MD5 check applies to reads of a whole single-part object: one readInto of it, on and off.
    const target = Buffer.allocUnsafe(size);
    for (const verify of [true, false]) {
      list.push({
        id: `s3-readinto-verify-${verify ? 'on' : 'off'}`,
        label: `S3 tier alone, whole-object readInto over https, MD5 check ${verify ? 'on' : 'off'}`,
        run: async () => {
          const t = createS3Tier({
            bucket: BUCKET,
            endpoint: secure.endpoint,
            region: REGION,
            credentials: { ...CREDENTIALS },
            ca: tls.cert,
            verify,
          });
          try {
            const t0 = process.hrtime.bigint();
            const n = await t.readInto(KEY, target);
            const s = Number(process.hrtime.bigint() - t0) / 1e9;
            if (n !== size) throw new Error(`readInto returned ${n} of ${size}`);
            return s;
          } finally {
            await t.close();
          }
        },
      });
    }

    const recs = await rounds(list, { runs, log, bytes: size });
    const med = (id) => throughput(recs.get(id), size)?.median;
    const targets = targetsTable([
      {
        what: 'https cold fill ≥ 1.5 × aws s3 cp over https',
        value: med('tierkit-https'),
        reference: med('aws-https'),
        refLabel: 'aws s3 cp (https)',
        needed: 1.5,
      },
      {
        what: "https cold fill ≥ 0.9 × tierkit's plain-http fill",
        value: med('tierkit-https'),
        reference: med('tierkit-http'),
        refLabel: 'tierkit over http',
        needed: 0.9,
      },
      {
        what: 'whole-object read with the MD5 check ≥ 0.9 × without',
        value: med('s3-readinto-verify-on'),
        reference: med('s3-readinto-verify-off'),
        refLabel: 'MD5 check off',
        needed: 0.9,
      },
    ]);
    const markdown = [
      `One ${size >= GiB ? `${size / GiB} GiB` : `${size / MiB} MiB`} object of random bytes, stored once and served by two s3rver processes on 127.0.0.1 from the same files: one over https (a self-signed P-256 certificate made for the run, trusted through \`ca\` and, for the aws CLI, \`AWS_CA_BUNDLE\`), one over plain http. tierkit fills a fresh fs-tier cache folder through a stack [fs, s3] (\`stack.fill\`); the aws CLI copies to a fresh file. Rounds, medians with min and max; every copy is checked after its timed part.`,
      '',
      peersMarkdown(peers),
      '',
      resultsTable(recs, size, { reference: 'tierkit-https' }),
      '',
      targets.markdown,
    ].join('\n');
    return {
      markdown,
      data: { sizeBytes: size, runs, records: recordsJson(recs, size), targets: targets.data },
    };
  } finally {
    await secure.close();
    await plain.close();
    await scratch.cleanup();
    collect();
  }
}
