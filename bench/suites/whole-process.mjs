// Whole processes, as users run them: each contestant is a fresh process (a pod
// start, an init container) copying a model from one s3rver (http, 127.0.0.1)
// to local files, timed from outside with its start-up. `tierkit warm` through
// its bin into an fs cache folder; `aws s3 cp --recursive`; `rclone copy`; a
// plain AWS SDK script; and the discard probe (node:http, 8 ranged GETs of
// 8 MiB in flight, bytes dropped) as the ceiling of what the server delivers.
// Shapes: one big object, a model of 4 shards and one of 30, each with a few
// small config/tokenizer files. Rounds rotate their order; the page cache is
// dropped before every run (as root; the server's files are read back in, so
// only the client's side starts cold). Also: the first fill of a fresh process
// against the fifth of one process that keeps filling (the in-process bench
// measures the latter).
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { awsCp, rcloneCopy } from '../lib/cold-contestants.mjs';
import { dropCaches, scratchDir, verifyFile } from '../lib/data.mjs';
import { recordsJson, resultsTable, rounds, targetsTable, throughput } from '../lib/measure.mjs';
import { findPeers, peersMarkdown } from '../lib/peers.mjs';
import { runCollect, timeProcess } from '../lib/process.mjs';
import { CREDENTIALS, REGION, startS3WithObjects, warmServerFiles } from '../lib/s3-env.mjs';
import { fmt, MiB } from '../stats.mjs';

export const name = 'whole-process';
export const title =
  'Whole processes: a fresh `tierkit warm` vs aws s3 cp, rclone, the AWS SDK and the ceiling';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..', '..');
const TIERKIT = join(ROOT, 'packages', 'warmer', 'bin', 'tierkit.cjs');
const CLI_BUILT = join(ROOT, 'packages', 'warmer', 'dist', 'cli.js');
const CHILD = join(here, '..', 'lib', 'whole-process-s3.mjs');
const BUCKET = 'bench';

/** The small files a model folder carries beside its weights (bytes). */
const SMALL_FILES = [
  ['config.json', 1_100],
  ['generation_config.json', 190],
  ['special_tokens_map.json', 450],
  ['tokenizer_config.json', 52_000],
  ['tokenizer.json', 9 * MiB],
];

function shapes(quick) {
  const mib = (v, full, small) => Number(process.env[v] || (quick ? small : full)) * MiB;
  const model = (prefix, n, size) => [
    ...Array.from({ length: n }, (_, i) => ({
      key: `${prefix}/model-${String(i + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`,
      size,
    })),
    ...SMALL_FILES.map(([f, s]) => ({ key: `${prefix}/${f}`, size: quick ? Math.min(s, 256 * 1024) : s })),
  ];
  return {
    single: {
      label: `one object of ${mib('BENCH_WP_SINGLE_MIB', 1024, 64) / MiB} MiB`,
      objects: [{ key: 'single/model.bin', size: mib('BENCH_WP_SINGLE_MIB', 1024, 64) }],
    },
    m4: {
      label: `4 × ${mib('BENCH_WP_M4_MIB', 256, 16) / MiB} MiB shards + ${SMALL_FILES.length} small files`,
      objects: model('m4', 4, mib('BENCH_WP_M4_MIB', 256, 16)),
    },
    m30: {
      label: `30 × ${mib('BENCH_WP_M30_MIB', 34, 2) / MiB} MiB shards + ${SMALL_FILES.length} small files`,
      objects: model('m30', 30, mib('BENCH_WP_M30_MIB', 34, 2)),
    },
    m100: {
      label: `100 × ${mib('BENCH_WP_M100_MIB', 10, 1) / MiB} MiB shards + ${SMALL_FILES.length} small files`,
      objects: model('m100', 100, mib('BENCH_WP_M100_MIB', 10, 1)),
    },
  };
}

/** Every object of `objects` (keys under `prefix/`) is a file under `dir`, holding the test bytes. */
async function verifyTree(dir, objects, prefix) {
  for (const o of objects) await verifyFile(join(dir, o.key.slice(prefix.length + 1)), o.size);
}

function cliEnv() {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('AWS_') || k.startsWith('TIERKIT_')) delete env[k];
  return {
    ...env,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_REGION: REGION,
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}

export default async function wholeProcess(ctx) {
  const { quick, log } = ctx;
  const runs = Number(process.env.BENCH_RUNS || (quick ? 2 : 5));
  const loops = Number(process.env.BENCH_WP_LOOPS || 1);
  const all = shapes(quick);
  const chosen = (process.env.BENCH_WP_SHAPES || 'single,m4,m30').split(',').map((s) => s.trim());
  for (const s of chosen)
    if (!all[s]) throw new Error(`BENCH_WP_SHAPES: unknown shape ${s} (${Object.keys(all)})`);
  const peers = findPeers(log);
  const scratch = await scratchDir('whole-process');
  const serverDir = join(scratch.dir, 's3rver');
  const objects = chosen.flatMap((s) => all[s].objects);
  log(`uploading ${objects.length} objects, ${fmt(objects.reduce((n, o) => n + o.size, 0) / MiB, 0)} MiB`);
  const server = await startS3WithObjects({ directory: serverDir, bucket: BUCKET, objects });
  const endpoint = server.endpoint;
  const originUrl = `s3://${BUCKET}?endpoint=${encodeURIComponent(endpoint)}&forcePathStyle=true`;
  const env = cliEnv();
  const notes = [];
  const built = existsSync(CLI_BUILT);
  if (!built)
    notes.push(
      'tierkit rows skipped: the CLI is not built (`npx turbo run build --filter=@tierkit/warmer...`).',
    );
  let dropped = dropCaches();
  if (!dropped)
    notes.push(
      'The page cache was not dropped between runs: `echo 3 > /proc/sys/vm/drop_caches` was refused (not root, or /proc/sys read-only).',
    );

  /** Drops the page cache (untimed), then reads the server's files back in: only the client side starts cold. */
  const coldClient = () => {
    if (!dropped) return;
    dropped = dropCaches();
    warmServerFiles(serverDir);
  };

  const sections = [];
  const data = { shapes: {}, loops: {}, notes };
  try {
    for (const shapeName of chosen) {
      const shape = all[shapeName];
      const bytes = shape.objects.reduce((n, o) => n + o.size, 0);
      const prefix = shapeName;
      const dest = join(scratch.dir, 'dest');
      const clean = () => rm(dest, { recursive: true, force: true });
      /** A contestant: a fresh process writing under `dest`, timed from outside, then checked. */
      const proc = (id, label, argv, { check = true, spawnEnv } = {}) => ({
        id,
        label,
        run: async () => {
          await clean();
          await mkdir(dest, { recursive: true });
          coldClient();
          const s = await timeProcess(argv[0], argv.slice(1), spawnEnv);
          if (check) await verifyTree(dest, shape.objects, prefix);
          return s;
        },
        after: clean,
      });
      const warmRow = (id, label, { query = '', flags = [] } = {}) =>
        proc(
          id,
          label,
          [
            process.execPath,
            TIERKIT,
            'warm',
            '--cache',
            `file://${dest}${query}`,
            '--origin',
            `${originUrl}&name=origin`,
            `${prefix}/`,
            '--json',
            ...flags,
          ],
          { spawnEnv: env, check: false },
        );
      const contestants = [];
      if (built) {
        contestants.push(
          warmRow('tk', '`tierkit warm` (sha256 recorded; directFill: the filesystem default)'),
          warmRow('tk-nock', '`tierkit warm --no-checksum`', { flags: ['--no-checksum'] }),
          warmRow('tk-direct', '`tierkit warm`, directFill on', { query: '?directFill=true' }),
          warmRow('tk-buffered', '`tierkit warm`, directFill off', { query: '?directFill=false' }),
        );
        // The cache keeps each object at its key: check the tree as for the others.
        for (const c of contestants) {
          const run = c.run;
          c.run = async () => {
            const s = await run();
            await verifyTree(join(dest, prefix), shape.objects, prefix);
            return s;
          };
        }
      }
      if (peers.aws) {
        contestants.push({
          id: 'aws',
          label: '`aws s3 cp --recursive`',
          run: async () => {
            await clean();
            coldClient();
            const t0 = process.hrtime.bigint();
            await awsCp({
              aws: peers.aws,
              endpoint,
              bucket: BUCKET,
              key: `${prefix}/`,
              dest,
              scratch: scratch.dir,
              recursive: true,
            });
            const s = Number(process.hrtime.bigint() - t0) / 1e9;
            await verifyTree(dest, shape.objects, prefix);
            return s;
          },
          after: clean,
        });
      }
      if (peers.rclone) {
        contestants.push({
          id: 'rclone',
          label: '`rclone copy`',
          run: async () => {
            await clean();
            coldClient();
            const t0 = process.hrtime.bigint();
            await rcloneCopy({
              rclone: peers.rclone,
              endpoint,
              bucket: BUCKET,
              key: prefix,
              dest,
              scratch: scratch.dir,
              recursive: true,
            });
            const s = Number(process.hrtime.bigint() - t0) / 1e9;
            await verifyTree(dest, shape.objects, prefix);
            return s;
          },
          after: clean,
        });
      }
      contestants.push(
        proc('sdk', 'AWS SDK script (GetObject per object, streamed to files, 8 objects at once)', [
          process.execPath,
          CHILD,
          'sdk',
          endpoint,
          BUCKET,
          `${prefix}/`,
          dest,
        ]),
        proc(
          'probe',
          'ceiling probe (node:http, 8 ranged GETs of 8 MiB in flight, bytes discarded)',
          [process.execPath, CHILD, 'probe', endpoint, BUCKET, `${prefix}/`],
          { check: false },
        ),
      );
      log(`${shape.label}: ${contestants.length} contestants × ${runs} runs`);
      const records = await rounds(contestants, { runs, log, bytes });
      const t = (id) => throughput(records.get(id), bytes)?.median;
      const targets = targetsTable([
        {
          what: '`tierkit warm` vs `aws s3 cp --recursive`',
          value: t('tk'),
          reference: t('aws'),
          refLabel: 'aws s3 cp',
          needed: 1.25,
        },
        {
          what: '`tierkit warm` vs the ceiling probe',
          value: t('tk'),
          reference: t('probe'),
          refLabel: 'probe',
          needed: 0.75,
        },
        {
          what: 'sha256 recorded vs not',
          value: t('tk'),
          reference: t('tk-nock'),
          refLabel: '--no-checksum',
          needed: 0.95,
        },
      ]);
      sections.push(
        `## ${shape.label}\n\n${resultsTable(records, bytes, { reference: 'tk', referenceLabel: '`tierkit warm`' })}\n\n${targets.markdown}`,
      );
      data.shapes[shapeName] = {
        label: shape.label,
        bytes,
        records: recordsJson(records, bytes),
        targets: targets.data,
      };
    }

    // First fill of a fresh process vs the fifth of one that keeps filling.
    const big = chosen.includes('single') ? all.single.objects[0] : undefined;
    if (big && loops > 0) {
      const lines = [
        '| fills in one process | fill 1 MiB/s | fill 2 | fill 3 | fill 4 | fill 5 | fill 1 ÷ fill 5 |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
      ];
      for (const [id, fsOpts] of [
        ['default', {}],
        ['buffered', { directFill: false }],
      ]) {
        const per = [];
        for (let i = 0; i < loops; i++) {
          coldClient();
          const out = await runCollect(
            process.execPath,
            [
              CHILD,
              'fill-loop',
              endpoint,
              BUCKET,
              big.key,
              join(scratch.dir, 'loop'),
              '5',
              JSON.stringify(fsOpts),
            ],
            { label: 'fill-loop' },
          );
          const { seconds } = JSON.parse(out.trim().split('\n').pop());
          per.push(seconds);
          log(`fill loop (${id}): ${seconds.map((s) => fmt(big.size / MiB / s, 0)).join(' → ')} MiB/s`);
        }
        data.loops[id] = per;
        for (const seconds of per) {
          const rates = seconds.map((s) => big.size / MiB / s);
          lines.push(
            `| \`stack.fill\`, directFill ${id === 'default' ? 'default' : 'off'} | ${rates.map((r) => fmt(r, 0)).join(' | ')} | ${fmt(rates[0] / rates[4])}× |`,
          );
        }
      }
      sections.push(
        `## First fill of a fresh process vs the fifth of a warmed one\n\nOne node process fills ${big.size / MiB} MiB five times, each into a new cache folder (a new stack each time), page cache dropped before the process starts. Target: fill 1 within 10 % of fill 5.\n\n${lines.join('\n')}`,
      );
    }
  } finally {
    await server.close();
    await scratch.cleanup();
  }
  const dirsLeft = existsSync(scratch.dir) ? await readdir(scratch.dir) : [];
  if (dirsLeft.length) notes.push(`scratch left behind: ${dirsLeft.join(', ')}`);
  const method = `Each contestant is a fresh process started by the bench and timed from outside, start-up included, copying the shape's objects from one s3rver (http, 127.0.0.1, its own process) into a new local folder on the bench's scratch filesystem. Rounds rotate the order; the page cache is dropped before each run and the server's files are read back in (untimed), so the client side starts cold and the server's disk is not what is measured. Every copy is checked (size and 64 KiB samples) after its timed part. Medians of ${runs} runs, with min and max.`;
  return {
    markdown: `${method}\n\n${peersMarkdown(peers)}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n\n${sections.join('\n\n')}`,
    data,
  };
}
