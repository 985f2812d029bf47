#!/usr/bin/env node
// Traces the cold fills of one process: where a fresh process spends the time
// a warmed one does not. Starts its own s3rver (its own process) with one object,
// then, in THIS process, fills it `FILLS` times into fresh cache folders under
// `TRACE_DIR` (a new stack each time), and prints per fill: wall time, time to the
// first ranged GET, GETs in flight over time (mean, and per 100 ms), piece
// durations (first pieces vs the rest), event-loop delay, CPU, plus the import
// and start-up costs of the process.
//
//   node bench/tools/trace-fill.mjs                    # 256 MiB, 5 fills, OS temp dir
//   TRACE_MIB=1024 TRACE_DIR=/mnt/ext4 FILLS=5 DIRECT=false node bench/tools/trace-fill.mjs
//   FS_JSON='{"pool":false}' ...                      # more fs tier options
//   PRESTART=1 ...                                     # start the worker pool with the fill's first request
//   TRACE_JSON=1 ...                                   # one JSON line instead of the text
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

const t0 = performance.now();
const MiB = 1024 * 1024;
const size = Number(process.env.TRACE_MIB || 256) * MiB;
const fills = Number(process.env.FILLS || 5);
const direct = process.env.DIRECT === undefined ? undefined : process.env.DIRECT === 'true';
const base = process.env.TRACE_DIR || tmpdir();
/** More fs tier options, as JSON (e.g. '{"pool":false}'). */
const fsExtra = JSON.parse(process.env.FS_JSON || '{}');

const { startS3WithObject } = await import('../lib/s3-env.mjs');
const tImportBench = performance.now();
const serverDir = await mkdtemp(join(tmpdir(), 'tierkit-trace-s3-'));
const server = await startS3WithObject({ directory: serverDir, bucket: 'trace', key: 'model.bin', size });
const tServer = performance.now();

// What a fresh `tierkit warm` loads, timed apart.
const tA = performance.now();
const { createStack } = await import('@tierkit/tier-core');
const { createFsTier } = await import('@tierkit/tier-fs');
const { createS3Tier } = await import('@tierkit/tier-s3');
const { CREDENTIALS, REGION } = await import('../lib/s3-env.mjs');
const importMs = performance.now() - tA;

function traced(tier, events) {
  return new Proxy(tier, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (prop === 'readInto') {
        return async (key, buf, opts) => {
          const e = { start: performance.now(), end: 0, length: opts?.length ?? buf.byteLength };
          events.push(e);
          try {
            return await target.readInto(key, buf, opts);
          } finally {
            e.end = performance.now();
          }
        };
      }
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

const out = {
  importMs,
  startupMs: tA - t0,
  benchImportMs: tImportBench - t0,
  serverMs: tServer - tImportBench,
  fills: [],
};
try {
  for (let i = 0; i < fills; i++) {
    const root = join(base, `tierkit-trace-${process.pid}-${i}`);
    await mkdir(root, { recursive: true });
    const events = [];
    const loop = monitorEventLoopDelay({ resolution: 5 });
    loop.enable();
    const cpu0 = process.cpuUsage();
    const tc = performance.now();
    const cache = createFsTier({
      root,
      name: 'cache',
      ...(direct === undefined ? {} : { directFill: direct }),
      ...fsExtra,
    });
    const origin = traced(
      createS3Tier({
        bucket: 'trace',
        endpoint: server.endpoint,
        region: REGION,
        forcePathStyle: true,
        credentials: { ...CREDENTIALS },
        name: 'origin',
      }),
      events,
    );
    const stack = createStack([cache, origin], { name: 'trace' });
    // PRESTART=1: start the fs tier's worker pool now, as `warm` does while the manifest resolves.
    if (process.env.PRESTART === '1') setImmediate(() => cache.workerPool);
    const ts = performance.now();
    const ok = await stack.fill('model.bin');
    const te = performance.now();
    const cpu = process.cpuUsage(cpu0);
    loop.disable();
    await stack.close();
    if (!ok) throw new Error('fill found nothing');
    const directFill = cache.directFill;
    await rm(root, { recursive: true, force: true });
    // GETs in flight, sampled per 100 ms of the fill.
    const buckets = [];
    for (let t = ts; t < te; t += 100) {
      const mid = t + 50;
      buckets.push(events.filter((e) => e.start <= mid && e.end >= mid).length);
    }
    const busy = events.reduce((n, e) => n + (e.end - e.start), 0);
    const dur = events.map((e) => e.end - e.start);
    const first = dur.slice(0, 16);
    const rest = dur.slice(16);
    const avg = (a) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : Number.NaN);
    out.fills.push({
      n: i + 1,
      directFill,
      setupMs: ts - tc,
      wallMs: te - ts,
      mibPerSecond: size / MiB / ((te - ts) / 1000),
      firstGetAfterMs: events.length ? events[0].start - ts : Number.NaN,
      lastGetEndToDoneMs: events.length ? te - Math.max(...events.map((e) => e.end)) : Number.NaN,
      gets: events.length,
      meanInFlight: busy / (te - ts),
      inFlightPer100ms: buckets,
      pieceMsFirst16: avg(first),
      pieceMsRest: avg(rest),
      cpuUserMs: cpu.user / 1000,
      cpuSystemMs: cpu.system / 1000,
      loopDelayMaxMs: loop.max / 1e6,
      loopDelayP99Ms: loop.percentile(99) / 1e6,
    });
  }
} finally {
  await server.close();
  await rm(serverDir, { recursive: true, force: true });
}

if (process.env.TRACE_JSON === '1') {
  process.stdout.write(`${JSON.stringify(out)}\n`);
} else {
  const f = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : String(n));
  console.log(
    `process: node start → script ${f(out.startupMs)} ms; tierkit imports ${f(out.importMs)} ms; s3rver + upload ${f(out.serverMs)} ms`,
  );
  for (const r of out.fills) {
    console.log(
      `fill ${r.n} (directFill ${r.directFill}): ${f(r.mibPerSecond)} MiB/s, ${f(r.wallMs)} ms; setup ${f(r.setupMs, 1)} ms; first GET after ${f(r.firstGetAfterMs, 1)} ms; ` +
        `${r.gets} GETs, ${f(r.meanInFlight, 1)} in flight on average; piece ${f(r.pieceMsFirst16)} ms (first 16) vs ${f(r.pieceMsRest)} ms; ` +
        `after the last GET ${f(r.lastGetEndToDoneMs)} ms; CPU user ${f(r.cpuUserMs)} sys ${f(r.cpuSystemMs)} ms; loop delay max ${f(r.loopDelayMaxMs, 1)} ms p99 ${f(r.loopDelayP99Ms, 1)}`,
    );
    console.log(`   in flight per 100 ms: ${r.inFlightPer100ms.join(' ')}`);
  }
}
