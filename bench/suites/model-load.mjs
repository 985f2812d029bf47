// Model load from S3: a sharded safetensors model (Hugging Face index) in
// s3rver, loaded side by side in one run by fresh processes:
//   tierkit streaming every tensor through [fs cache, s3], cold then warm;
//   `aws s3 cp --recursive`, then reading the files (parse, copy each tensor out);
//   a plain loader on the AWS SDK (one GET per file, parse, copy each tensor out);
//   `cat` of the cached files (the warm reference);
//   2 tensor-parallel ranks (Megatron splits): one node (a shared cache), and a node each.
// Each contestant is its own process (this file, run with a mode), timed from
// outside with its start-up, its peak RSS taken by /usr/bin/time.
//
//   node suites/model-load.mjs <mode> <json job>    # the child side
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const name = 'model-load';
export const title = 'Model load from S3: tierkit streaming tensors vs aws s3 cp + read, a plain SDK loader';

const MiB = 1024 * 1024;
const BUCKET = 'bench';
const PREFIX = 'llm';
const INDEX = 'model.safetensors.index.json';
const self = fileURLToPath(import.meta.url);

// ————————————————————————————————————————————————————— the model

/** Llama-like BF16 tensors of about `bytes` (hidden size grows with the model, as real ones do). */
function modelSpecs(bytes) {
  const h = bytes >= 1024 * MiB ? 2048 : bytes >= 256 * MiB ? 1024 : 512;
  const inter = 2 * h;
  const vocab = 4 * h;
  const perLayer = (4 * h * h + 3 * h * inter) * 2 + 2 * h * 4;
  const layers = Math.max(1, Math.round((bytes - 2 * vocab * h * 2) / perLayer));
  const specs = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [vocab, h] }];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, dtype: 'F32', shape: [h] },
      ...['q', 'k', 'v', 'o'].map((x) => ({
        name: `${p}.self_attn.${x}_proj.weight`,
        dtype: 'BF16',
        shape: [h, h],
      })),
      { name: `${p}.post_attention_layernorm.weight`, dtype: 'F32', shape: [h] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: 'BF16', shape: [inter, h] },
      { name: `${p}.mlp.up_proj.weight`, dtype: 'BF16', shape: [inter, h] },
      { name: `${p}.mlp.down_proj.weight`, dtype: 'BF16', shape: [h, inter] },
    );
  }
  specs.push(
    { name: 'model.norm.weight', dtype: 'F32', shape: [h] },
    { name: 'lm_head.weight', dtype: 'BF16', shape: [vocab, h] },
  );
  return specs;
}

/** Megatron-style splits: column-parallel layers by output rows, row-parallel ones by input columns. */
const SLICES = [
  { pattern: /\.(self_attn\.[qkv]_proj|mlp\.(gate|up)_proj)\.weight$/, dim: 0 },
  { pattern: /\.(self_attn\.o_proj|mlp\.down_proj)\.weight$/, dim: -1 },
  { pattern: /^(model\.embed_tokens|lm_head)\.weight$/, dim: 0 },
];

async function planShards(planSafetensors, bytes, shardCount) {
  const specs = modelSpecs(bytes);
  const per = Math.ceil(specs.length / shardCount);
  const pad = (n) => String(n).padStart(5, '0');
  const shards = [];
  for (let i = 0; i < shardCount; i++) {
    const group = specs.slice(i * per, (i + 1) * per);
    if (group.length) shards.push({ group });
  }
  return shards.map((s, i) => ({
    name: `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`,
    plan: planSafetensors(s.group, { format: 'pt' }),
  }));
}

// ————————————————————————————————————————————————————— child side

/** The client settings of the local server (no streaming checksums: s3rver would store their framing). */
async function s3Config(endpoint) {
  const { localS3ClientConfig } = await import('@tierkit/tier-s3/testing');
  return localS3ClientConfig(endpoint);
}

/** Parses a safetensors buffer and copies each tensor out, as a simple loader does. */
function copyTensorsOut(buf) {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  let count = 0;
  let bytes = 0;
  for (const [k, t] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    const copy = new Uint8Array(b - a);
    copy.set(buf.subarray(8 + n + a, 8 + n + b));
    count++;
    bytes += copy.byteLength;
  }
  return { tensors: count, bytes };
}

async function child(mode, job) {
  const out = { tensors: 0, bytes: 0, originBytes: 0 };
  if (mode === 'tierkit' || mode === 'baseline') {
    const { openModel } = await import('@tierkit/model');
    const { createStack, withMetrics } = await import('@tierkit/tier-core');
    const { FsTier } = await import('@tierkit/tier-fs');
    const { S3Tier } = await import('@tierkit/tier-s3');
    const origin = withMetrics()(
      new S3Tier({ name: 's3', bucket: BUCKET, prefix: PREFIX, ...(await s3Config(job.endpoint)) }),
    );
    const stack = createStack([new FsTier({ name: 'cache', root: job.cacheDir }), origin], {
      blockSize: job.blockSize,
    });
    if (mode === 'tierkit') {
      const model = await openModel(stack, INDEX);
      for await (const t of model.load({
        maxBytesInFlight: job.maxBytesInFlight,
        ...(job.worldSize > 1 ? { rank: job.rank, worldSize: job.worldSize, slices: SLICES } : {}),
      })) {
        out.tensors++;
        out.bytes += t.bytes.byteLength;
      }
    }
    out.originBytes = origin.metrics.bytesRead;
    await stack.close();
  } else if (mode === 'sdk') {
    const { GetObjectCommand, S3Client } = await import('@aws-sdk/client-s3');
    const client = new S3Client(await s3Config(job.endpoint));
    const index = JSON.parse(
      await (
        await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/${INDEX}` }))
      ).Body.transformToString(),
    );
    for (const file of new Set(Object.values(index.weight_map))) {
      const res = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/${file}` }));
      const buf = Buffer.from(await res.Body.transformToByteArray());
      const r = copyTensorsOut(buf);
      out.tensors += r.tensors;
      out.bytes += r.bytes;
      out.originBytes += buf.byteLength;
    }
    client.destroy();
  } else if (mode === 'read-files') {
    for (const f of (await readdir(job.dir)).filter((f) => f.endsWith('.safetensors')).sort()) {
      const r = copyTensorsOut(await readFile(join(job.dir, f)));
      out.tensors += r.tensors;
      out.bytes += r.bytes;
    }
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  try {
    await child(process.argv[2], JSON.parse(process.argv[3] ?? '{}'));
    process.exit(0);
  } catch (err) {
    // One line the parent reports as the reason.
    process.stderr.write(
      `\nchild failed: ${err?.code ?? ''} ${String(err?.message ?? err).split('\n')[0]}\n`,
    );
    process.exit(1);
  }
}

// ————————————————————————————————————————————————————— parent side

const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : null;

/** Runs a process; resolves to { seconds, rssBytes, report } (report: its last stdout line as JSON, if any). */
function timed(cmd, args, { env } = {}) {
  return new Promise((resolve, reject) => {
    const rssFile = join(process.env.BENCH_TMP || '/tmp', `tierkit-rss-${process.pid}-${Math.random()}`);
    const argv = TIME ? [TIME, '-f', '%M', '-o', rssFile, cmd, ...args] : [cmd, ...args];
    const t0 = process.hrtime.bigint();
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.once('error', reject);
    p.once('exit', async (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      let rssBytes;
      if (TIME) {
        rssBytes = Number((await readFile(rssFile, 'utf8').catch(() => '')).trim().split('\n').at(-1)) * 1024;
        await rm(rssFile, { force: true });
      }
      if (code !== 0) return reject(new Error(`${cmd} ${args[0] ?? ''} exited ${code}: ${err.slice(-1500)}`));
      const last = out.trim().split('\n').at(-1);
      let report;
      try {
        report = last ? JSON.parse(last) : undefined;
      } catch {
        report = undefined;
      }
      resolve({ seconds, rssBytes: Number.isFinite(rssBytes) ? rssBytes : undefined, report });
    });
  });
}

const node = (mode, job) => timed(process.execPath, ['--no-warnings', self, mode, JSON.stringify(job)]);

function awsEnv(scratch) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AWS_')) delete env[k];
  return {
    ...env,
    AWS_CONFIG_FILE: join(scratch, 'aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(scratch, 'no-credentials'),
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}

export default async function modelLoad(ctx) {
  const { quick, log } = ctx;
  const { fmt } = await import('../stats.mjs');
  const { summarize } = await import('../stats.mjs');
  let planSafetensors;
  try {
    ({ planSafetensors } = await import('@tierkit/model'));
  } catch (err) {
    throw new Error(
      `@tierkit/model is not built (npx turbo run build --filter=@tierkit/model): ${err.message.split('\n')[0]}`,
    );
  }
  const { findPeers, peersMarkdown } = await import('../lib/peers.mjs');
  const { scratchDir, collect } = await import('../lib/data.mjs');
  const { objectChunks } = await import('../lib/data.mjs');
  const { PutObjectCommand, S3Client } = await import('@aws-sdk/client-s3');
  const { writeFile } = await import('node:fs/promises');
  const { startLocalS3 } = await import('@tierkit/tier-s3/testing');

  const size = Number(process.env.BENCH_MODEL_MIB || (quick ? 256 : 2048)) * MiB;
  const runs = Number(process.env.BENCH_RUNS || (quick ? 2 : 3));
  const blockSize = Number(process.env.BENCH_MODEL_BLOCK_MIB || 8) * MiB;
  const maxBytesInFlight = 256 * MiB;
  const peers = findPeers(log);
  const scratch = await scratchDir('model');
  const server = await startLocalS3({ directory: join(scratch.dir, 's3rver'), buckets: [BUCKET] });
  try {
    // — seed: each shard is its header, then a keystream (incompressible, like weights) —
    const shards = await planShards(planSafetensors, size, 4);
    const client = new S3Client(await s3Config(server.endpoint));
    const weightMap = {};
    let modelBytes = 0;
    for (const s of shards) {
      for (const t of s.plan.tensors) weightMap[t.name] = s.name;
      const data = s.plan.size - s.plan.header.byteLength;
      const body = Readable.from(
        (async function* () {
          yield s.plan.header;
          yield* objectChunks(data);
        })(),
      );
      await client.send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: `${PREFIX}/${s.name}`,
          Body: body,
          ContentLength: s.plan.size,
        }),
      );
      modelBytes += s.plan.size;
    }
    const indexBody = JSON.stringify({ metadata: { total_size: modelBytes }, weight_map: weightMap });
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `${PREFIX}/${INDEX}`, Body: indexBody }));
    client.destroy();
    modelBytes += Buffer.byteLength(indexBody);
    // The server's disk is read once so every contestant meets a warm server.
    spawnSync('sh', [
      '-c',
      'find "$1" -type f -exec cat {} + > /dev/null',
      'sh',
      join(scratch.dir, 's3rver'),
    ]);
    await writeFile(join(scratch.dir, 'aws-config'), '[default]\nregion = us-east-1\n');
    log(
      `model ${fmt(modelBytes / MiB, 0)} MiB in ${shards.length} shards, ${runs} runs, block ${blockSize / MiB} MiB`,
    );

    const rec = new Map();
    const add = (id, label, r) => {
      const e = rec.get(id) ?? { label, seconds: [], rss: [], origin: [], error: undefined };
      if (r.error) e.error = r.error;
      else {
        e.seconds.push(r.seconds);
        if (r.rssBytes !== undefined) e.rss.push(r.rssBytes);
        if (r.originBytes !== undefined) e.origin.push(r.originBytes);
      }
      rec.set(id, e);
    };
    const attempt = async (id, label, fn) => {
      try {
        const r = await fn();
        add(id, label, r);
        log(`${label}: ${fmt(r.seconds)} s`);
      } catch (err) {
        // The child's own message is the last line of its stderr.
        const lines = err.message.trim().split('\n');
        const why =
          lines.find((l) => l.startsWith('child failed:')) ?? lines.filter(Boolean).slice(-3).join(' / ');
        add(id, label, { error: why });
        log(`${label} failed: ${why}`);
      }
    };
    const job = { endpoint: server.endpoint, blockSize, maxBytesInFlight, worldSize: 1 };
    let seq = 0;
    const groups = [
      async () => {
        const cacheDir = join(scratch.dir, `cache-${seq++}`);
        let cold;
        await attempt('tierkit-cold', 'tierkit: stream all tensors, cold ([fs, s3])', async () => {
          cold = await node('tierkit', { ...job, cacheDir });
          return { ...cold, originBytes: cold.report.originBytes };
        });
        await attempt('tierkit-warm', 'tierkit: stream all tensors, warm', async () => {
          const r = await node('tierkit', { ...job, cacheDir });
          return { ...r, originBytes: r.report.originBytes };
        });
        await attempt('cat', 'cat of the cached files', async () => {
          const files = shards.map((s) => join(cacheDir, s.name));
          return timed('sh', ['-c', 'cat "$@" > /dev/null', 'sh', ...files]);
        });
        await rm(cacheDir, { recursive: true, force: true });
      },
      async () => {
        if (!peers.aws) return;
        const dest = join(scratch.dir, `aws-${seq++}`);
        await attempt('aws-read', 'aws s3 cp --recursive, then read + copy tensors out', async () => {
          const cp = await timed(
            peers.aws,
            [
              's3',
              'cp',
              '--recursive',
              `s3://${BUCKET}/${PREFIX}/`,
              dest,
              '--endpoint-url',
              server.endpoint,
              '--no-progress',
              '--only-show-errors',
            ],
            { env: awsEnv(scratch.dir) },
          );
          const read = await node('read-files', { dir: dest });
          return {
            seconds: cp.seconds + read.seconds,
            rssBytes: Math.max(cp.rssBytes ?? 0, read.rssBytes ?? 0) || undefined,
            originBytes: modelBytes,
          };
        });
        await rm(dest, { recursive: true, force: true });
      },
      async () => {
        await attempt('sdk', 'plain loader: AWS SDK GET per file, parse, copy out', async () => {
          const r = await node('sdk', job);
          return { ...r, originBytes: r.report.originBytes };
        });
      },
      async () => {
        const shared = join(scratch.dir, `tp-${seq++}`);
        await attempt('tp-shared', 'tierkit: 2 ranks, one node (shared cache), cold', async () => {
          const t0 = process.hrtime.bigint();
          const rs = await Promise.all(
            [0, 1].map((rank) => node('tierkit', { ...job, cacheDir: shared, rank, worldSize: 2 })),
          );
          return {
            seconds: Number(process.hrtime.bigint() - t0) / 1e9,
            rssBytes: Math.max(...rs.map((r) => r.rssBytes ?? 0)) || undefined,
            originBytes: rs.reduce((n, r) => n + r.report.originBytes, 0),
          };
        });
        await rm(shared, { recursive: true, force: true });
        const nodes = join(scratch.dir, `tp-nodes-${seq++}`);
        await attempt('tp-node', 'tierkit: 2 ranks, a node each (own caches), cold — per node', async () => {
          const t0 = process.hrtime.bigint();
          const rs = await Promise.all(
            [0, 1].map((rank) =>
              node('tierkit', { ...job, cacheDir: join(nodes, `n${rank}`), rank, worldSize: 2 }),
            ),
          );
          return {
            seconds: Number(process.hrtime.bigint() - t0) / 1e9,
            rssBytes: Math.max(...rs.map((r) => r.rssBytes ?? 0)) || undefined,
            originBytes: Math.max(...rs.map((r) => r.report.originBytes)),
          };
        });
        await rm(nodes, { recursive: true, force: true });
      },
    ];
    let baseline;
    for (let r = 0; r < runs; r++) {
      const shift = r % groups.length;
      for (const g of [...groups.slice(shift), ...groups.slice(0, shift)]) {
        collect();
        await g();
      }
    }
    try {
      baseline = await node('baseline', { ...job, cacheDir: join(scratch.dir, 'baseline') });
    } catch {
      baseline = undefined;
    }

    // — report —
    const med = (id) => {
      const e = rec.get(id);
      return e?.seconds.length ? summarize(e.seconds) : undefined;
    };
    const mibs = (s) => modelBytes / MiB / s;
    const rows = [
      '| contestant | median MiB/s | min | max | runs | peak RSS MiB | from origin MiB |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const [, e] of rec) {
      if (!e.seconds.length) {
        rows.push(
          `| ${e.label} | failed: ${(e.error ?? '').slice(0, 120).replaceAll('|', '\\|')} | | | 0 | | |`,
        );
        continue;
      }
      const s = summarize(e.seconds);
      const rss = e.rss.length ? fmt(Math.max(...e.rss) / MiB, 0) : 'n/a';
      const origin = e.origin.length ? fmt(summarize(e.origin).median / MiB, 0) : 'n/a';
      rows.push(
        `| ${e.label} | ${fmt(mibs(s.median), 0)} | ${fmt(mibs(s.max), 0)} | ${fmt(mibs(s.min), 0)} | ${s.n} | ${rss} | ${origin} |`,
      );
    }
    const cold = med('tierkit-cold');
    const warm = med('tierkit-warm');
    const aws = med('aws-read');
    const cat = med('cat');
    const node1 = rec.get('tp-node');
    const perNode = node1?.origin.length ? summarize(node1.origin).median : undefined;
    const coldRss = rec.get('tierkit-cold')?.rss ?? [];
    const rssLimit =
      baseline?.rssBytes !== undefined ? maxBytesInFlight + baseline.rssBytes + 64 * MiB : undefined;
    const target = (what, value, ref, needed, unit = '×') => {
      const ratio = value !== undefined && ref !== undefined ? value / ref : Number.NaN;
      const met = Number.isFinite(ratio) ? (unit === '≤' ? ratio <= needed : ratio >= needed) : undefined;
      return {
        what,
        ratio,
        needed,
        met,
        line: `| ${what} | ${Number.isFinite(ratio) ? fmt(ratio) : 'n/a'} | ${unit === '≤' ? '≤' : '≥'} ${needed} | ${met === undefined ? 'not measured' : met ? 'met' : '**not met**'} |`,
      };
    };
    const targets = [
      target(
        'cold streaming ÷ (aws s3 cp --recursive + read)',
        cold && mibs(cold.median),
        aws && mibs(aws.median),
        1.3,
      ),
      target('warm ÷ cat of the same files', warm && mibs(warm.median), cat && mibs(cat.median), 0.8),
      target('2-rank origin bytes per node ÷ model size', perNode, modelBytes, 0.6, '≤'),
      target(
        'peak RSS (cold) ÷ (maxBytesInFlight + baseline process + 64 MiB)',
        coldRss.length ? Math.max(...coldRss) : undefined,
        rssLimit,
        1,
        '≤',
      ),
    ];
    const markdown = [
      `A ${fmt(modelBytes / MiB, 0)} MiB Llama-like BF16 model in ${shards.length} safetensors shards with a Hugging Face index, in s3rver on 127.0.0.1 (its own process). Every contestant is a fresh process timed from outside (start-up included); peak RSS from \`/usr/bin/time\`${TIME ? '' : ' (absent here: n/a)'}. tierkit: \`openModel(stack, index)\` and \`model.load({ maxBytesInFlight: ${maxBytesInFlight / MiB} MiB })\` draining every tensor, through \`[fs cache, s3]\` with ${blockSize / MiB} MiB blocks; cold into a fresh cache, warm from it in the next process. Tensor-parallel: Megatron splits (q/k/v/gate/up/embeddings by rows, o/down by columns), norms replicated. ${fmt(runs, 0)} runs; groups rotate their order each run. A baseline process (same modules, stack built, nothing loaded) had a peak RSS of ${baseline?.rssBytes ? fmt(baseline.rssBytes / MiB, 0) : 'n/a'} MiB.`,
      '',
      peersMarkdown(peers),
      '',
      rows.join('\n'),
      '',
      '| target | ratio | needed | met |',
      '| --- | ---: | ---: | --- |',
      ...targets.map((t) => t.line),
      '',
      'Origin bytes per node: with Megatron splits a rank needs half of each row-split tensor but every block of a column-split one (each row contributes a band), so per node it is about 0.5 × row-split + column-split + replicated bytes (~0.65 of a Llama layer); on one node the ranks share one cache and the origin sends each block once.',
    ].join('\n');
    return {
      markdown,
      data: {
        modelBytes,
        blockSize,
        maxBytesInFlight,
        runs,
        baselineRss: baseline?.rssBytes,
        contestants: Object.fromEntries(rec),
        targets: targets.map(({ line, ...t }) => t),
      },
    };
  } finally {
    await server.close();
    await scratch.cleanup();
  }
}
