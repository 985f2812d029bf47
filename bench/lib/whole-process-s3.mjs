// Whole processes the whole-process suite times from outside (start-up counts):
//
//   node whole-process-s3.mjs sdk <endpoint> <bucket> <prefix> <dest>
//       the plain AWS SDK: list the prefix, one GetObject per object, each body
//       streamed to its file (up to BENCH_SDK_OBJECTS objects at once, default 8)
//   node whole-process-s3.mjs probe <endpoint> <bucket> <prefix>
//       the ceiling: node:http only, 8 ranged GETs of 8 MiB in flight across all
//       objects of the prefix, bytes discarded
//   node whole-process-s3.mjs fill-loop <endpoint> <bucket> <key> <cacheBase> <n> [fsOptionsJson]
//       n `stack.fill`s of one object in this one process, each into a fresh cache
//       folder; prints the seconds of each as JSON (the first is a fresh process's)
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';

const MiB = 1024 * 1024;
const [mode, ...args] = process.argv.slice(2);

/** Keys and sizes under `prefix`, from an unsigned ListObjectsV2 (s3rver serves anonymous reads). */
async function listPlain(agent, endpoint, bucket, prefix) {
  const out = [];
  let token;
  do {
    const url = new URL(`${endpoint}/${bucket}`);
    url.searchParams.set('list-type', '2');
    url.searchParams.set('prefix', prefix);
    if (token) url.searchParams.set('continuation-token', token);
    const xml = await new Promise((resolve, reject) => {
      request(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.once('end', () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`list: HTTP ${res.statusCode}`)),
        );
        res.once('error', reject);
      })
        .once('error', reject)
        .end();
    });
    for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
      const key = /<Key>([^<]*)<\/Key>/.exec(m[1])?.[1];
      const size = Number(/<Size>(\d+)<\/Size>/.exec(m[1])?.[1]);
      if (key) out.push({ key: key.replaceAll('&amp;', '&'), size });
    }
    token = /<IsTruncated>true<\/IsTruncated>/.test(xml)
      ? /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml)?.[1]
      : undefined;
  } while (token);
  return out;
}

async function probe(endpoint, bucket, prefix) {
  const inFlight = 8;
  const agent = new Agent({ keepAlive: true, maxSockets: inFlight });
  const objects = await listPlain(agent, endpoint, bucket, prefix);
  const parts = [];
  for (const o of objects) {
    for (let at = 0; at < o.size; at += 8 * MiB)
      parts.push({ key: o.key, at, length: Math.min(8 * MiB, o.size - at) });
  }
  let next = 0;
  let bytes = 0;
  const get = (p) =>
    new Promise((resolve, reject) => {
      const req = request(
        `${endpoint}/${bucket}/${p.key.split('/').map(encodeURIComponent).join('/')}`,
        { agent, headers: { range: `bytes=${p.at}-${p.at + p.length - 1}` } },
        (res) => {
          if (res.statusCode !== 206 && res.statusCode !== 200)
            reject(new Error(`GET: HTTP ${res.statusCode}`));
          let got = 0;
          res.on('data', (c) => {
            got += c.length;
          });
          res.once('end', () => {
            bytes += got;
            got === p.length ? resolve() : reject(new Error(`GET ${p.key}: ${got} of ${p.length} bytes`));
          });
          res.once('error', reject);
        },
      );
      req.once('error', reject);
      req.end();
    });
  const worker = async () => {
    while (next < parts.length) await get(parts[next++]);
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  agent.destroy();
  const want = objects.reduce((n, o) => n + o.size, 0);
  if (bytes !== want) throw new Error(`probe: ${bytes} of ${want} bytes`);
}

async function sdk(endpoint, bucket, prefix, dest) {
  const { GetObjectCommand, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  const { s3Client } = await import('./s3-env.mjs');
  const client = s3Client(endpoint);
  try {
    const keys = [];
    let token;
    do {
      const page = await client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of page.Contents ?? []) keys.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++];
        const path = join(dest, key.slice(prefix.length));
        await mkdir(dirname(path), { recursive: true });
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        await pipeline(res.Body, createWriteStream(path, { highWaterMark: 1 * MiB }));
      }
    };
    const width = Number(process.env.BENCH_SDK_OBJECTS || 8);
    await Promise.all(Array.from({ length: Math.min(width, keys.length) }, worker));
  } finally {
    client.destroy();
  }
}

async function fillLoop(endpoint, bucket, key, cacheBase, n, fsJson) {
  const t0 = performance.now();
  const { tierkitColdFill } = await import('./tierkit-contestants.mjs');
  const importMs = performance.now() - t0;
  const seconds = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const cacheDir = join(cacheBase, `fill-${i}`);
    const t = performance.now();
    await tierkitColdFill({ endpoint, bucket, key, cacheDir, mode: 'fill', fs: JSON.parse(fsJson || '{}') });
    seconds.push((performance.now() - t) / 1000);
    // The copy is not read back: free its space for the next fill.
    await rm(cacheDir, { recursive: true, force: true });
  }
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(
    `${JSON.stringify({ importMs, seconds, cpuUserMs: cpu.user / 1000, cpuSystemMs: cpu.system / 1000 })}\n`,
  );
}

if (mode === 'sdk') await sdk(...args);
else if (mode === 'probe') await probe(...args);
else if (mode === 'fill-loop') await fillLoop(args[0], args[1], args[2], args[3], Number(args[4]), args[5]);
else throw new Error(`unknown mode ${mode}`);
