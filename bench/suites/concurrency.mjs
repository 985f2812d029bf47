// Concurrent cold readers of one 1 GiB object through [fs cache, S3 origin]:
// one reader; 8 readers in one process; 1 and 4 processes sharing the cache
// folder. The figure that matters is the bytes fetched from the origin: every
// byte exactly once (the object's size), however many readers; and the wall
// time against one reader.
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createStack } from '@tierkit/tier-core';
import { createFsTier } from '@tierkit/tier-fs';
import { collect, scratchDir, verifyFile } from '../lib/data.mjs';
import { runCollect } from '../lib/process.mjs';
import { startS3WithObject } from '../lib/s3-env.mjs';
import { countingTier, s3OriginTier } from '../lib/tierkit-concurrency.mjs';
import { fmt, GiB, MiB, summarize } from '../stats.mjs';

export const name = 'concurrency';
export const title = 'Concurrent cold readers: bytes fetched from the origin and wall time';

const BUCKET = 'bench';
const KEY = 'models/concurrent.bin';
const here = dirname(fileURLToPath(import.meta.url));
const readerScript = join(here, '..', 'lib', 'concurrent-reader.mjs');

async function runReader(args) {
  const out = await runCollect(process.execPath, [readerScript, ...args], { label: 'reader' });
  return JSON.parse(out.trim().split('\n').at(-1));
}

export default async function concurrency(ctx) {
  const { quick, log } = ctx;
  const size = Number(process.env.BENCH_CONC_MIB || process.env.BENCH_S3_MIB || (quick ? 128 : 1024)) * MiB;
  const runs = Number(process.env.BENCH_CONC_RUNS || (quick ? 1 : 3));
  const scratch = await scratchDir('concurrency');
  const server = await startS3WithObject({
    directory: join(scratch.dir, 's3'),
    bucket: BUCKET,
    key: KEY,
    size,
  });
  let seq = 0;
  const freshCache = async () => {
    const dir = join(scratch.dir, `cache-${++seq}`);
    await mkdir(dir, { recursive: true });
    return dir;
  };
  const inProcess = async (readers) => {
    const cacheDir = await freshCache();
    const counter = { bytes: 0 };
    const stack = createStack(
      [
        createFsTier({ root: cacheDir, name: 'cache' }),
        countingTier(s3OriginTier(server.endpoint, BUCKET), counter),
      ],
      { name: 'bench' },
    );
    const t0 = process.hrtime.bigint();
    let bytes = 0;
    try {
      await Promise.all(
        Array.from({ length: readers }, async () => {
          const s = await stack.readStream(KEY);
          if (!s) throw new Error('not found');
          for await (const c of s) bytes += c.byteLength;
        }),
      );
    } finally {
      await stack.close();
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await verifyFile(join(cacheDir, KEY), size);
    await rm(cacheDir, { recursive: true, force: true });
    return { seconds, bytes, originBytes: counter.bytes };
  };
  const processes = async (n) => {
    const cacheDir = await freshCache();
    const t0 = process.hrtime.bigint();
    const reports = await Promise.all(
      Array.from({ length: n }, () => runReader([server.endpoint, BUCKET, KEY, cacheDir, '1'])),
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await verifyFile(join(cacheDir, KEY), size);
    await rm(cacheDir, { recursive: true, force: true });
    return {
      seconds,
      bytes: reports.reduce((s, r) => s + r.bytes, 0),
      originBytes: reports.reduce((s, r) => s + r.originBytes, 0),
      perProcess: reports.map((r) => r.originBytes),
    };
  };
  const scenarios = [
    { id: 'one', label: '1 reader, in process', readers: 1, run: () => inProcess(1) },
    { id: 'eight', label: '8 readers, one process (one stack)', readers: 8, run: () => inProcess(8) },
    { id: 'proc-1', label: '1 process (whole process, spawn to exit)', readers: 1, run: () => processes(1) },
    {
      id: 'proc-4',
      label: '4 processes, one cache folder (spawn to exit)',
      readers: 4,
      run: () => processes(4),
    },
  ];
  const results = new Map(
    scenarios.map((s) => [s.id, { ...s, seconds: [], origin: [], delivered: [], error: undefined }]),
  );
  try {
    for (let r = 0; r < runs; r++) {
      for (const s of scenarios) {
        const rec = results.get(s.id);
        if (rec.error) continue;
        collect();
        try {
          const out = await s.run();
          rec.seconds.push(out.seconds);
          rec.origin.push(out.originBytes);
          rec.delivered.push(out.bytes);
          if (out.perProcess) rec.perProcess = out.perProcess;
          log(`${s.label} run ${r + 1}/${runs}: ${fmt(out.seconds)} s, origin ${out.originBytes} B`);
        } catch (err) {
          rec.error = String(err?.message ?? err);
          log(`${s.label} failed: ${rec.error.split('\n')[0]}`);
        }
      }
    }
  } finally {
    await server.close();
    await scratch.cleanup();
  }
  const med = (id) => {
    const rec = results.get(id);
    return rec.seconds.length ? summarize(rec.seconds).median : undefined;
  };
  const sizeText = size >= GiB ? `${size / GiB} GiB` : `${size / MiB} MiB`;
  const lines = [
    '| scenario | readers | wall s (median) | min | max | origin bytes (every run) | = object size | bytes delivered to readers | wall ÷ one reader |',
    '| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: |',
  ];
  const data = {};
  let exactOnce = true;
  for (const [id, rec] of results) {
    if (rec.seconds.length === 0) {
      lines.push(
        `| ${rec.label} | ${rec.readers} | failed: ${(rec.error ?? 'no runs').slice(0, 160)} | | | | | | |`,
      );
      exactOnce = false;
      continue;
    }
    const s = summarize(rec.seconds);
    const ok = rec.origin.every((b) => b === size);
    exactOnce &&= ok;
    const ref = id.startsWith('proc') ? med('proc-1') : med('one');
    lines.push(
      `| ${rec.label} | ${rec.readers} | ${fmt(s.median)} | ${fmt(s.min)} | ${fmt(s.max)} | ${[...new Set(rec.origin)].join(', ')} | ${ok ? 'yes' : '**no**'} | ${rec.delivered[0]} | ${ref ? `${fmt(s.median / ref)}×` : 'n/a'} |`,
    );
    data[id] = {
      label: rec.label,
      readers: rec.readers,
      seconds: rec.seconds,
      originBytes: rec.origin,
      delivered: rec.delivered,
      perProcessOriginBytes: rec.perProcess,
      error: rec.error,
    };
  }
  const perProc = results.get('proc-4')?.perProcess;
  const markdown = [
    `A ${sizeText} object of random bytes in s3rver (own process, 127.0.0.1); each scenario starts from an empty fs cache folder and reads the whole object through a stack \`[createFsTier(cache), createS3Tier(origin)]\` with the stack's block fills (tier-core defaults), draining \`readStream\`. The origin tier is wrapped in a counter of every byte it hands out (readStream, read, readInto); for processes each reports its own count and the table sums them. The cached copy is verified after each run. ${runs} run(s) per scenario, in rounds; in-process rows are compared with one in-process reader, process rows with one process.`,
    '',
    lines.join('\n'),
    '',
    perProc
      ? `Origin bytes per process in the last 4-process run: ${perProc.join(', ')} (sum ${perProc.reduce((a, b) => a + b, 0)}).`
      : '',
    '',
    `Target: concurrent cold readers fetch each byte from the origin exactly once — **${exactOnce ? 'met' : 'not met'}** (origin bytes = ${size} in every run of every scenario).`,
  ].join('\n');
  return { markdown, data: { sizeBytes: size, runs, scenarios: data, exactlyOnce: exactOnce } };
}
