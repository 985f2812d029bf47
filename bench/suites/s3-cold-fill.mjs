// Cold fill from S3: one object in a local s3rver, copied into a fresh local
// file (or tierkit's fs cache) by each contestant, side by side in one run,
// first straight from the server, then through a shaping proxy (per-connection
// bandwidth and per-request latency, like a remote store).
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  awsCp,
  opendalRead,
  opendalReader,
  rangedGetProbe,
  rcloneCopy,
  sdkSingleStream,
} from '../lib/cold-contestants.mjs';
import { collect, dropCaches, scratchDir, verifyFile } from '../lib/data.mjs';
import { recordsJson, resultsTable, rounds, targetsTable, throughput } from '../lib/measure.mjs';
import { findPeers, peersMarkdown } from '../lib/peers.mjs';
import { startS3WithObject, startShapingProxy } from '../lib/s3-env.mjs';
import { s3Concurrency, s3TierToFile, tierkitColdFill } from '../lib/tierkit-contestants.mjs';
import { fmt, GiB, MiB } from '../stats.mjs';

export const name = 's3-cold-fill';
export const title = 'Cold fill from S3: tierkit vs aws s3 cp, rclone, opendal, the AWS SDK';

const BUCKET = 'bench';
const KEY = 'models/cold.bin';
const PROXY_RATE = 25 * MiB;
const PROXY_LATENCY_MS = 20;
const OPENDAL_CONCURRENCY = 8;

export default async function coldFill(ctx) {
  const { quick, log } = ctx;
  const size = Number(process.env.BENCH_S3_MIB || (quick ? 128 : 1024)) * MiB;
  const runs = Number(process.env.BENCH_RUNS || (quick ? 3 : 5));
  const proxyRuns = Number(process.env.BENCH_PROXY_RUNS || (quick ? 2 : 3));
  const peers = findPeers(log);
  const scratch = await scratchDir('s3');
  const dropped = dropCaches();
  log(
    `object ${size / MiB} MiB, ${runs} runs (${proxyRuns} through the proxy); drop_caches ${dropped ? 'works' : 'not permitted'}`,
  );

  const server = await startS3WithObject({
    directory: join(scratch.dir, 's3rver'),
    bucket: BUCKET,
    key: KEY,
    size,
  });
  let proxy;
  try {
    let seq = 0;
    const fresh = (label) => join(scratch.dir, `out-${label}-${seq++}`);
    const common = { bucket: BUCKET, key: KEY, size, scratch: scratch.dir };

    /** Contestants against `endpoint`; each run fills a fresh file, checked after timing, then removed. */
    const build = (endpoint, { proxied }) => {
      const list = [];
      const add = (id, label, fill) => {
        let path;
        list.push({
          id,
          label,
          run: async () => {
            const dest = fresh(id);
            const t0 = process.hrtime.bigint();
            path = await fill(dest);
            const s = Number(process.hrtime.bigint() - t0) / 1e9;
            await verifyFile(path, size);
            return s;
          },
          after: async () => {
            if (path) await rm(path, { recursive: true, force: true });
            path = undefined;
          },
        });
      };
      // tierkit fills a cache folder: the object inside it is checked, the whole folder removed.
      const tk = (id, label, opts) =>
        list.push(
          (() => {
            let cacheDir;
            return {
              id,
              label,
              run: async () => {
                cacheDir = fresh(id);
                const t0 = process.hrtime.bigint();
                const file = await tierkitColdFill({ endpoint, bucket: BUCKET, key: KEY, cacheDir, ...opts });
                const s = Number(process.hrtime.bigint() - t0) / 1e9;
                await verifyFile(file, size);
                return s;
              },
              after: async () => {
                if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
                cacheDir = undefined;
              },
            };
          })(),
        );

      if (!proxied) {
        for (const c of [1, 2, 4, 8]) {
          add(`ceiling-${c}`, `ceiling probe: node:http ranged GETs ×${c}`, (dest) =>
            rangedGetProbe({ ...common, endpoint, dest, concurrency: c }),
          );
        }
      } else {
        const c = s3Concurrency();
        add(`ceiling-${c}`, `ranged GETs ×${c} (node:http, through the proxy)`, (dest) =>
          rangedGetProbe({ ...common, endpoint, dest, concurrency: c }),
        );
      }
      tk('tierkit', 'tierkit: stack [fs, s3], fill() (pre-warm: into the cache, nothing read back)', {
        mode: 'fill',
      });
      if (!proxied) {
        // End-to-end integrity is on by default (every byte checked against the MD5 ETag
        // on the digest worker before publishing): the same fill with it off prices it.
        tk('tierkit-unchecked', 'tierkit: fill(), integrity off (S3 tier verify: false)', {
          mode: 'fill',
          s3: { verify: false },
        });
      }
      tk('tierkit-stream', 'tierkit: stack [fs, s3], readStream drained', { mode: 'stream' });
      tk('tierkit-readinto', 'tierkit: stack [fs, s3], whole-object readInto (allocates the object)', {
        mode: 'readInto',
      });
      if (!proxied) {
        tk('tierkit-nofsync', 'tierkit: readStream drained, fs tier fsync off', {
          mode: 'stream',
          fs: { fsync: false },
        });
      }
      add('tierkit-s3', 'tierkit S3 tier alone: readStream piped to a file (diagnostic, no cache)', (dest) =>
        s3TierToFile({ endpoint, bucket: BUCKET, key: KEY, dest }),
      );
      if (peers.aws) {
        add('aws', 'aws s3 cp (defaults: 10 × 8 MiB)', (dest) =>
          awsCp({ ...common, aws: peers.aws, endpoint, dest }),
        );
        add('aws-16', 'aws s3 cp (16 × 16 MiB)', (dest) =>
          awsCp({ ...common, aws: peers.aws, endpoint, dest, concurrency: 16, chunk: '16MB' }),
        );
      }
      if (peers.rclone) {
        add('rclone', 'rclone copyto (defaults: 4 streams)', (dest) =>
          rcloneCopy({ ...common, rclone: peers.rclone, endpoint, dest }),
        );
      }
      if (peers.opendal) {
        const od = { ...common, opendal: peers.opendal, endpoint };
        if (!proxied)
          add('opendal-read-1', 'opendal 0.49.2 read (buffered, 1 stream)', (dest) =>
            opendalRead({ ...od, dest }),
          );
        add(
          'opendal-read',
          `opendal 0.49.2 read (buffered, concurrent ${OPENDAL_CONCURRENCY} × 8 MiB)`,
          (dest) => opendalRead({ ...od, dest, concurrent: OPENDAL_CONCURRENCY }),
        );
        add(
          'opendal-reader',
          `opendal 0.49.2 reader (streaming, concurrent ${OPENDAL_CONCURRENCY} × 8 MiB)`,
          (dest) =>
            opendalReader({ ...od, dest, concurrent: OPENDAL_CONCURRENCY, prefetch: OPENDAL_CONCURRENCY }),
        );
      }
      add('sdk', '@aws-sdk/client-s3 GetObject, one stream', (dest) =>
        sdkSingleStream({ ...common, endpoint, dest }),
      );
      return list;
    };

    // — straight from the server —
    const direct = await rounds(build(server.endpoint, { proxied: false }), { runs, log, bytes: size });
    const ceilings = [...direct]
      .filter(([id]) => id.startsWith('ceiling-'))
      .map(([id, r]) => [id, throughput(r, size)]);
    const bestCeiling = ceilings.filter(([, t]) => t).sort((a, b) => b[1].median - a[1].median)[0];
    const ceiling = bestCeiling?.[1]?.median;
    const med = (recs, id) => throughput(recs.get(id), size)?.median;
    const bestOf = (recs, ids) =>
      ids
        .map((id) => [id, med(recs, id)])
        .filter(([, v]) => v)
        .sort((a, b) => b[1] - a[1])[0];
    const aboveCeiling = [...direct]
      .filter(([id]) => !id.startsWith('ceiling-'))
      .map(([id, r]) => [r.label, med(direct, id)])
      .filter(([, v]) => v && ceiling && v > ceiling)
      .map(([label, v]) => `${label} (${fmt(v, 0)} MiB/s)`);
    const opendalBest = bestOf(direct, ['opendal-read-1', 'opendal-read', 'opendal-reader']);
    const tkDirect = med(direct, 'tierkit');
    const directTargets = targetsTable([
      {
        what: 'cold fill ≥ 0.9 × ceiling',
        value: tkDirect,
        reference: ceiling,
        refLabel: `ceiling (${bestCeiling?.[0] ?? 'n/a'})`,
        needed: 0.9,
      },
      {
        what: 'cold fill ≥ 1.25 × aws s3 cp',
        value: tkDirect,
        reference: med(direct, 'aws'),
        refLabel: 'aws s3 cp (defaults)',
        needed: 1.25,
      },
      {
        what: 'integrity checking on ≥ 0.9 × off (fill)',
        value: tkDirect,
        reference: med(direct, 'tierkit-unchecked'),
        refLabel: 'tierkit fill(), integrity off',
        needed: 0.9,
      },
      {
        what: "cold fill ≥ opendal's best mode",
        value: tkDirect,
        reference: opendalBest?.[1],
        refLabel: opendalBest ? direct.get(opendalBest[0]).label : 'opendal (skipped)',
        needed: 1,
      },
    ]);

    // — through the shaping proxy —
    proxy = await startShapingProxy(server.endpoint, {
      bytesPerSecond: PROXY_RATE,
      latencyMs: PROXY_LATENCY_MS,
    });
    const viaProxy = await rounds(build(proxy.endpoint, { proxied: true }), {
      runs: proxyRuns,
      log,
      bytes: size,
    });
    const conc = s3Concurrency();
    const shapedTarget = Math.min((conc * PROXY_RATE) / MiB, ceiling ?? Number.POSITIVE_INFINITY);
    const tkProxy = med(viaProxy, 'tierkit');
    const proxyTargets = targetsTable([
      {
        what: 'through the proxy ≥ 0.8 × min(concurrency × rate, ceiling)',
        value: tkProxy,
        reference: shapedTarget,
        refLabel: `min(${conc} × 25 MiB/s, ceiling ${fmt(ceiling ?? Number.NaN, 0)})`,
        needed: 0.8,
      },
      {
        what: 'through the proxy ≥ 1.5 × aws s3 cp',
        value: tkProxy,
        reference: med(viaProxy, 'aws'),
        refLabel: 'aws s3 cp (defaults)',
        needed: 1.5,
      },
    ]);

    const ofCeiling = {
      title: '÷ ceiling',
      cell: (_id, t) => (ceiling ? `${fmt(t.median / ceiling)}` : 'n/a'),
    };
    const ofShaped = { title: '÷ min(conc × rate, ceiling)', cell: (_id, t) => fmt(t.median / shapedTarget) };
    const markdown = [
      `One ${size >= GiB ? `${size / GiB} GiB` : `${size / MiB} MiB`} object of random bytes in s3rver on 127.0.0.1 (its own process), copied by each contestant into a fresh local file (tierkit: into a fresh fs-tier cache folder through a stack [fs, s3]). Contestants run in rounds, one run each per round; each figure is the median of the runs with min and max. Every copy is checked (size and sampled bytes) after its timed part. In-process contestants (tierkit, opendal, the SDK, the probe) include building their client; the CLIs include process start.`,
      '',
      `${peersMarkdown(peers)}`,
      '',
      `Page cache: \`drop_caches\` ${dropped ? 'works in this container' : 'is not permitted here'}; it is not used between runs, on purpose: the server's copy is read once before the runs so every contestant meets a warm server and the figures measure the transfer path, not this VM's disk. Each destination is a new file, removed after its run.`,
      '',
      `### Straight from the server`,
      '',
      resultsTable(direct, size, { reference: 'tierkit', extra: ofCeiling }),
      '',
      `Ceiling: best of the ranged-GET probes, ${bestCeiling ? `${bestCeiling[0]} at ${fmt(ceiling, 0)} MiB/s` : 'not measured'}.${aboveCeiling.length ? ` Above it: ${aboveCeiling.join(', ')} — on 2 shared cores s3rver (Node) and the client compete for CPU, so a client that spends less CPU per byte (Go, Rust) leaves the server more and can beat a Node probe.` : ''} tierkit's S3 tier: up to ${conc} parallel ranges (it measures the first part and uses fewer against a fast local server), each a direct GET: its own HTTP/1.1 sockets, signed by the SDK's SigV4 signer, whose bodies the kernel reads straight into the fill's buffers (\`directGets\`, the default for an http: endpoint).`,
      '',
      directTargets.markdown,
      '',
      "Integrity: tierkit's fills check every byte against what the origin states before publishing (here s3rver's MD5 ETags; MD5 on tier-core's digest worker as the blocks arrive), so the `fill()` rows above include it; the `integrity off` row is the same fill with tier-s3's `verify: false`. On a machine whose cores are all busy (s3rver and the client share two here) the hash's CPU time shows as throughput; with a core to spare it runs beside the transfer.",
      '',
      `### Through a shaping proxy (${PROXY_RATE / MiB} MiB/s per connection, +${PROXY_LATENCY_MS} ms per request)`,
      '',
      `The proxy (tier-s3's \`startShapingProxy\`: TCP level, a token bucket per connection for the answers, each request delayed on its way in) runs in its own process in front of the same server. It parses nothing (about a third of a core at 300 MiB/s here), where the HTTP-level fault proxy used before parsed both sides of every request. Target figure: min(${conc} × ${PROXY_RATE / MiB} MiB/s, ceiling) = ${fmt(shapedTarget, 0)} MiB/s.`,
      '',
      resultsTable(viaProxy, size, { reference: 'tierkit', extra: ofShaped }),
      '',
      proxyTargets.markdown,
    ].join('\n');
    return {
      markdown,
      data: {
        sizeBytes: size,
        runs,
        proxyRuns,
        dropCachesWorks: dropped,
        peers: { versions: peers.versions, installed: peers.installed, skipped: peers.skipped },
        ceiling: { id: bestCeiling?.[0], mibPerSecond: ceiling },
        tierkitConcurrency: conc,
        proxy: { bytesPerSecond: PROXY_RATE, latencyMs: PROXY_LATENCY_MS, targetMiBPerSecond: shapedTarget },
        direct: recordsJson(direct, size),
        viaProxy: recordsJson(viaProxy, size),
        targets: [...directTargets.data, ...proxyTargets.data],
      },
    };
  } finally {
    await proxy?.close();
    await server.close();
    await scratch.cleanup();
    collect();
  }
}
