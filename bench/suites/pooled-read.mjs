// Pooled read: one cached 1 GiB object read by tier-fs's direct path (parallel
// positioned reads on libuv's threads), by the same tier through the worker pool
// (@tierkit/pool, piscina) into shared memory, by the native pread pool
// (@tierkit/native's IoPool), by `cat` and by fio with the same parallelism.
// Then a sweep of read sizes (direct vs pool) to find where the pool starts to
// pay, and sha256 of the object inline vs on the pool with the event loop's delay.
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { closeSharedPool, defaultThreads, sharedBytes, sharedPool } from '@tierkit/pool';
import { createFsTier } from '@tierkit/tier-fs';
import { collect, objectChunks, scratchDir, verifyFile, warmPageCache } from '../lib/data.mjs';
import { recordsJson, resultsTable, rounds, targetsTable, throughput } from '../lib/measure.mjs';
import { findPeers, peersMarkdown } from '../lib/peers.mjs';
import { fioSeconds, timeProcess } from '../lib/process.mjs';
import { fmt, GiB, MiB, summarize } from '../stats.mjs';

export const name = 'pooled-read';
export const title =
  'Pooled read of a cached object: worker pool vs direct path vs native pool vs cat and fio';

const KEY = 'models/pooled.bin';
const BLOCK = 4 * MiB;

async function loadNative() {
  try {
    const native = await import('@tierkit/native');
    if (!native.capabilities().pool) return { why: 'the addon has no pool here' };
    return { native };
  } catch (err) {
    return { why: `@tierkit/native did not load (${String(err.message ?? err).split('\n')[0]})` };
  }
}

/** Median seconds of `fn` over enough runs to move about `budget` bytes (at least `min` runs). */
async function medianOf(fn, bytes, { budget = 512 * MiB, min = 15, max = 400 } = {}) {
  const n = Math.max(min, Math.min(max, Math.ceil(budget / bytes)));
  const s = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    s.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return summarize(s).median;
}

export default async function pooledRead(ctx) {
  const { quick, log } = ctx;
  const size = Number(process.env.BENCH_POOL_MIB || process.env.BENCH_WARM_MIB || (quick ? 128 : 1024)) * MiB;
  const runs = Number(process.env.BENCH_RUNS || (quick ? 5 : 9));
  const threads = Number(process.env.BENCH_POOL_THREADS || defaultThreads());
  const peers = findPeers(log);
  const scratch = await scratchDir('pooled');
  const root = join(scratch.dir, 'cache');
  // The same directory through two tiers: the direct path only, and the pool for every read into shared memory.
  const direct = createFsTier({ root, fsync: false, pool: false });
  const pool = sharedPool({ threads });
  const pooled = createFsTier({ root, fsync: false, pool, poolReadThreshold: 1 });
  const notes = [];
  let fh;
  let ioPool;
  try {
    await direct.write(KEY, objectChunks(size), { size });
    const path = join(root, KEY);
    await verifyFile(path, size);
    warmPageCache(path);
    fh = await open(path, 'r');

    const target = Buffer.alloc(size);
    const shared = sharedBytes(size);
    // After a child process the buffers' pages are copy-on-write (the fork): rewrite them, untimed.
    const retouch = async () => {
      target.fill(0);
      shared.fill(0);
    };
    await retouch();
    const { native, why } = await loadNative();
    if (native) ioPool = new native.IoPool({ threads, chunkSize: BLOCK });
    else notes.push(`native IoPool row skipped: ${why}.`);

    const check = (n) => {
      if (n !== size) throw new Error(`read ${n} of ${size} bytes`);
    };
    const list = [
      {
        id: 'direct',
        label: 'tier-fs readInto, direct path (4 × 4 MiB positioned reads on libuv), reused Buffer',
        run: async () => check(await direct.readInto(KEY, target)),
      },
      {
        id: 'direct-shared',
        label: 'tier-fs readInto, direct path, reused SharedArrayBuffer',
        run: async () => check(await direct.readInto(KEY, shared)),
      },
      {
        id: 'pool',
        label: `tier-fs readInto, worker pool (${threads} piscina threads × 4 MiB), reused SharedArrayBuffer`,
        run: async () => check(await pooled.readInto(KEY, shared)),
      },
    ];
    if (ioPool) {
      list.push({
        id: 'native',
        label: `native IoPool.read (${threads} threads × 4 MiB, one open descriptor), reused Buffer`,
        run: async () => check(await ioPool.read(fh.fd, target, 0)),
      });
    }
    list.push({
      id: 'cat',
      label: 'cat file > /dev/null (whole process)',
      run: () => timeProcess('sh', ['-c', 'cat "$1" > /dev/null', 'sh', path]),
      after: retouch,
    });
    if (peers.fio) {
      for (const jobs of [...new Set([1, threads])]) {
        list.push({
          id: `fio-${jobs}`,
          label: `fio read, bs 4 MiB, psync, numjobs ${jobs}, --invalidate=0 (fio's figure)`,
          run: () => fioSeconds(peers.fio, path, size, jobs, BLOCK),
          after: retouch,
        });
      }
    }
    const recs = await rounds(list, { runs, warmup: 1, log, bytes: size });
    const med = (id) => throughput(recs.get(id), size)?.median;

    // Read-size sweep: where (if anywhere) does the pool beat the direct path?
    const sizes = [64 * 1024, 256 * 1024, MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB].filter(
      (s) => s <= size,
    );
    const sweep = [];
    for (const s of sizes) {
      const t = target.subarray(0, s);
      const sh = shared.subarray(0, s);
      const row = { bytes: s };
      // Alternate to share drift; each median over ~512 MiB moved.
      for (let pass = 0; pass < 2; pass++) {
        const d = await medianOf(() => direct.readInto(KEY, t), s);
        const p = await medianOf(() => pooled.readInto(KEY, sh), s);
        row.direct = Math.min(row.direct ?? Number.POSITIVE_INFINITY, d);
        row.pool = Math.min(row.pool ?? Number.POSITIVE_INFINITY, p);
      }
      if (ioPool) row.native = await medianOf(() => ioPool.read(fh.fd, t, 0), s);
      log(`sweep ${s} B: direct ${fmt(row.direct * 1e6, 0)} µs, pool ${fmt(row.pool * 1e6, 0)} µs`);
      sweep.push(row);
    }
    let switchAt;
    for (let i = sweep.length - 1; i >= 0 && sweep[i].pool <= sweep[i].direct; i--) switchAt = sweep[i].bytes;

    // sha256 of the whole object: inline (as tier-fs without a pool) vs on the pool; event-loop delay meanwhile.
    const hashRuns = quick ? 2 : 3;
    const hashRows = [];
    for (const [id, label, fn] of [
      [
        'inline',
        'main thread: 4 MiB reads + createHash',
        async () => {
          const h = createHash('sha256');
          const buf = Buffer.allocUnsafe(BLOCK);
          for (let pos = 0; pos < size; ) {
            const { bytesRead } = await fh.read(buf, 0, BLOCK, pos);
            h.update(buf.subarray(0, bytesRead));
            pos += bytesRead;
          }
          return h.digest('hex');
        },
      ],
      ['pool', 'worker pool (ReadPool.sha256)', async () => (await pool.sha256(fh.fd)).hex],
    ]) {
      const secs = [];
      const delays = [];
      const served = [];
      let digest;
      const small = Buffer.alloc(64 * 1024);
      for (let r = 0; r < hashRuns; r++) {
        const h = monitorEventLoopDelay({ resolution: 5 });
        h.enable();
        // A reader of 64 KiB chunks (KV-chunk-like) runs alongside: how many reads does it get done?
        let stop = false;
        let reads = 0;
        const reader = (async () => {
          while (!stop) {
            await direct.readInto(KEY, small, { offset: (reads % 1000) * 65536 });
            reads++;
          }
        })();
        const t0 = process.hrtime.bigint();
        digest = await fn();
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        stop = true;
        await reader;
        secs.push(s);
        served.push(reads / s);
        h.disable();
        delays.push(h.max / 1e6);
      }
      hashRows.push({
        id,
        label,
        seconds: summarize(secs).median,
        maxDelayMs: Math.max(...delays),
        readsPerSecond: summarize(served).median,
        digest,
      });
    }
    if (hashRows[0].digest !== hashRows[1].digest) throw new Error('sha256 inline and on the pool differ');

    const targets = targetsTable([
      {
        what: 'pooled readInto, reused buffer ≥ 0.75 × cat',
        value: med('pool'),
        reference: med('cat'),
        refLabel: 'cat > /dev/null',
        needed: 0.75,
      },
      {
        what: 'pooled readInto not slower than the direct path (1 GiB)',
        value: med('pool'),
        reference: med('direct-shared'),
        refLabel: 'direct path, same memory',
        needed: 1,
      },
      {
        what: 'direct readInto (the default) ≥ 0.75 × cat',
        value: med('direct'),
        reference: med('cat'),
        refLabel: 'cat > /dev/null',
        needed: 0.75,
      },
    ]);
    const sizeText = size >= GiB ? `${size / GiB} GiB` : `${size / MiB} MiB`;
    const kib = (b) => (b >= MiB ? `${b / MiB} MiB` : `${b / 1024} KiB`);
    const sweepTable = [
      `| read size | direct µs | pool µs | pool ÷ direct (time) |${ioPool ? ' native IoPool µs |' : ''}`,
      `| ---: | ---: | ---: | ---: |${ioPool ? ' ---: |' : ''}`,
      ...sweep.map(
        (r) =>
          `| ${kib(r.bytes)} | ${fmt(r.direct * 1e6, 0)} | ${fmt(r.pool * 1e6, 0)} | ${fmt(r.pool / r.direct)}× |${ioPool ? ` ${fmt(r.native * 1e6, 0)} |` : ''}`,
      ),
    ].join('\n');
    const markdown = [
      `One ${sizeText} object in a tierkit fs cache folder, in the page cache. In-process readers fill one buffer allocated and touched once and reused by every run (a Buffer for the direct path and the native pool, a SharedArrayBuffer for the worker pool, which can only write into shared memory; the direct path is also timed into that same shared memory). The worker pool and the native pool use ${threads} threads (the cores available, @tierkit/pool's default); fio runs with numjobs 1 and ${threads}. Rounds as in warm-read (rotating order, one untimed warm-up, buffers rewritten after each child process). Median of ${runs} rounds.`,
      '',
      peersMarkdown(peers),
      ...notes.map((n) => `\n${n}`),
      '',
      resultsTable(recs, size, { reference: 'pool', referenceLabel: 'worker pool' }),
      '',
      targets.markdown,
      '',
      '### Where the pool starts to pay (read size sweep)',
      '',
      'One readInto of each size from the start of the object into reused memory; the better of two alternating medians (each over about 512 MiB moved, at least 15 reads).',
      '',
      sweepTable,
      '',
      switchAt === undefined
        ? '**The pool is not faster than the direct path at any size measured here**, so tier-fs keeps the direct path as its default (`poolReadThreshold` defaults to Infinity; set it to use the pool where your machine says it pays).'
        : `The pool is at least as fast as the direct path from **${kib(switchAt)}** up on this machine: a \`poolReadThreshold\` of ${kib(switchAt)} is what this run supports.`,
      '',
      `### sha256 of the ${sizeText} object: inline vs worker pool`,
      '',
      '| where | seconds (median) | MiB/s | longest event-loop stall (ms) | 64 KiB reads/s served meanwhile |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...hashRows.map(
        (r) =>
          `| ${r.label} | ${fmt(r.seconds)} | ${fmt(size / MiB / r.seconds, 0)} | ${fmt(r.maxDelayMs, 1)} | ${fmt(r.readsPerSecond, 0)} |`,
      ),
      '',
      "The stall is `monitorEventLoopDelay`'s max during the hash; the last column is a concurrent loop of 64 KiB `readInto`s through the same tier while the hash runs: what the main thread still serves.",
    ].join('\n');
    return {
      markdown,
      data: {
        sizeBytes: size,
        runs,
        threads,
        peers: { versions: peers.versions, installed: peers.installed, skipped: peers.skipped },
        results: recordsJson(recs, size),
        sweep,
        switchAtBytes: switchAt ?? null,
        sha256: hashRows,
        targets: targets.data,
      },
    };
  } finally {
    ioPool?.close();
    await fh?.close().catch(() => undefined);
    await direct.close().catch(() => undefined);
    await pooled.close().catch(() => undefined);
    await closeSharedPool();
    await scratch.cleanup();
    collect();
  }
}
