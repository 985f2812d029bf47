/**
 * The habits users bring from `hf cache`, `juicefs warmup` and `aws s3 sync`:
 * exit codes that compose, rm, --exclude, --check, --delete, --quiet, ls by
 * prefix, purge --dry-run; and failing fast on a cache under /proc. Against a
 * real S3 server, with --json parsed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createS3Tier, type S3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, CLI, cachedFiles, MiB, tierkit } from './cli-harness.js';

const PKG = join(dirname(fileURLToPath(import.meta.url)), '..');
let s3: LocalS3;
let bucket: S3Tier;
let work: string;
let originUrl: string;

const objects: Record<string, Uint8Array> = {
  'llama/config.json': new TextEncoder().encode('{"model_type":"llama"}'),
  'llama/model-00001.safetensors': bytes(1 * MiB, 1),
  'llama/model-00002.safetensors': bytes(MiB / 2, 2),
  'llama/tokenizer.json': bytes(100_000, 3),
  'qwen/config.json': new TextEncoder().encode('{"model_type":"qwen2"}'),
  'qwen/model.safetensors': bytes(300_000, 4),
};
const total = (keys: string[]) => keys.reduce((n, k) => n + objects[k]!.byteLength, 0);

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'tierkit-habits-'));
  s3 = await startLocalS3({ buckets: ['models'] });
  bucket = createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) });
  for (const [k, v] of Object.entries(objects)) await bucket.write(k, v);
  originUrl =
    `s3://models?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true` +
    '&requestChecksumCalculation=WHEN_REQUIRED&responseChecksumValidation=WHEN_REQUIRED';
}, 120_000);

afterAll(async () => {
  await bucket?.close();
  await s3?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

const stackArgs = (cache: string) => ['--cache', join(work, cache), '--origin', originUrl];

describe('exit codes that compose', () => {
  it('a prefix or glob matching nothing is an error unless --allow-empty', async () => {
    const typo = await tierkit(['warm', ...stackArgs('typo'), 'llama-typo/', 'llama/config.json', '--json']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/nothing matches 'llama-typo\/' at the origin/);
    const doc = JSON.parse(typo.stdout);
    expect(doc).toMatchObject({ unmatched: ['llama-typo/'], fetched: 1, ok: false });
    const glob = await tierkit(['warm', ...stackArgs('typo'), 'llama/*.gguf']);
    expect(glob.code).toBe(1);
    expect(glob.stderr).toMatch(/nothing matches 'llama\/\*\.gguf'/);
    const allowed = await tierkit(['warm', ...stackArgs('typo'), 'llama-typo/', '--allow-empty', '--json']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(JSON.parse(allowed.stdout)).toMatchObject({ unmatched: ['llama-typo/'], ok: true });
  });

  it('a cache under /proc fails at once with a clear message', async () => {
    for (const cache of ['/proc/tierkit-cache/models', '/proc']) {
      const r = await tierkit(['ls', '--cache', cache]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/on proc, a virtual filesystem where no cache can be made/);
      const w = await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/']);
      expect(w.code).toBe(1);
      expect(w.stderr).toMatch(/virtual filesystem/);
    }
    expect(existsSync('/proc/tierkit-cache')).toBe(false);
  });
});

describe('warm --exclude, --check, --delete, --quiet', () => {
  it('--exclude leaves out what a glob or prefix names', async () => {
    const r = await tierkit([
      'warm',
      ...stackArgs('exclude'),
      'llama/',
      'qwen/',
      '--exclude',
      '**/*.safetensors',
      '--exclude',
      'qwen/',
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const keys = JSON.parse(r.stdout).items.map((i: { key: string }) => i.key);
    expect(keys).toEqual(['llama/config.json', 'llama/tokenizer.json']);
    expect(await cachedFiles(join(work, 'exclude'))).toEqual(keys);
  });

  it('--check reports coverage, fetches nothing, and exits 1 until all is cached and fresh', async () => {
    const args = ['warm', ...stackArgs('check'), 'llama/', '--check', '--json'];
    const cold = await tierkit(args);
    expect(cold.code).toBe(1);
    expect(JSON.parse(cold.stdout)).toMatchObject({ check: true, coverage: 0, objects: 4, objectsCached: 0 });
    expect(await cachedFiles(join(work, 'check'))).toEqual([]);
    const part = ['llama/config.json', 'llama/model-00001.safetensors'];
    expect((await tierkit(['warm', ...stackArgs('check'), ...part])).code).toBe(0);
    const half = JSON.parse((await tierkit(args)).stdout);
    const all = Object.keys(objects).filter((k) => k.startsWith('llama/'));
    expect(half).toMatchObject({ objectsCached: 2, bytesCached: total(part), bytesTotal: total(all) });
    expect(half.coverage).toBeCloseTo(total(part) / total(all), 10);
    expect(
      half.items.filter((i: { state: string }) => i.state === 'missing').map((i: { key: string }) => i.key),
    ).toEqual(['llama/model-00002.safetensors', 'llama/tokenizer.json']);
    expect((await tierkit(['warm', ...stackArgs('check'), 'llama/'])).code).toBe(0);
    const full = await tierkit(args);
    expect(full.code, full.stderr).toBe(0);
    expect(JSON.parse(full.stdout)).toMatchObject({ coverage: 1, objectsCached: 4 });
    // A change at the origin makes the copy stale: covered no more.
    await bucket.write('llama/config.json', new TextEncoder().encode('{"model_type":"llama","v":2}'));
    try {
      const stale = await tierkit(['warm', ...stackArgs('check'), 'llama/', '--check']);
      expect(stale.code).toBe(1);
      expect(stale.stdout).toMatch(/stale +llama\/config\.json/);
      expect(stale.stdout).toMatch(/coverage \d+\.\d%: 3\/4 objects/);
    } finally {
      await bucket.write('llama/config.json', objects['llama/config.json']!);
    }
  });

  it('--delete drops cached objects the origin no longer has (--dry-run only lists them)', async () => {
    const extra = 'qwen/old-shard.safetensors';
    await bucket.write(extra, bytes(1000, 9));
    expect((await tierkit(['warm', ...stackArgs('delete'), 'qwen/'])).code).toBe(0);
    expect(await cachedFiles(join(work, 'delete'))).toContain(extra);
    await bucket.delete(extra);
    const dry = await tierkit(['warm', ...stackArgs('delete'), 'qwen/', '--delete', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout).deleted).toEqual([extra]);
    expect(await cachedFiles(join(work, 'delete'))).toContain(extra);
    const real = await tierkit(['warm', ...stackArgs('delete'), 'qwen/', '--delete']);
    expect(real.code, real.stderr).toBe(0);
    expect(real.stdout).toMatch(/deleted +qwen\/old-shard\.safetensors +\(no longer at the origin\)/);
    expect(await cachedFiles(join(work, 'delete'))).toEqual(['qwen/config.json', 'qwen/model.safetensors']);
  });

  it('--quiet prints nothing on success; --json still prints its document', async () => {
    const q = await tierkit(['warm', ...stackArgs('quiet'), 'qwen/', '-q']);
    expect(q.code, q.stderr).toBe(0);
    expect(q.stdout).toBe('');
    expect(q.stderr).toBe('');
    const j = await tierkit(['warm', ...stackArgs('quiet'), 'qwen/', '--quiet', '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ fresh: 2 });
  });
});

describe('rm, ls by prefix, purge --dry-run', () => {
  it('rm removes keys, prefixes and globs from the cache only; a name matching nothing is an error', async () => {
    const cache = join(work, 'rm');
    expect((await tierkit(['warm', ...stackArgs('rm'), 'llama/', 'qwen/'])).code).toBe(0);
    expect((await tierkit(['pin', '--cache', cache, 'qwen/config.json'])).code).toBe(0);
    const dry = await tierkit(['rm', '--cache', cache, 'llama/*.safetensors', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout).removed.map((r: { key: string }) => r.key)).toEqual([
      'llama/model-00001.safetensors',
      'llama/model-00002.safetensors',
    ]);
    expect(await cachedFiles(cache)).toHaveLength(6);
    const r = await tierkit(['rm', '--cache', cache, 'llama/', 'qwen/config.json', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.bytes).toBe(
      total([...Object.keys(objects).filter((k) => k.startsWith('llama/')), 'qwen/config.json']),
    );
    expect(doc.removed.find((x: { key: string }) => x.key === 'qwen/config.json').pinned).toBe(true);
    expect(await cachedFiles(cache)).toEqual(['qwen/model.safetensors']);
    // The origin still has everything.
    expect(await bucket.stat('llama/config.json')).toBeDefined();
    const typo = await tierkit(['rm', '--cache', cache, 'llama-typo/']);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(/nothing cached matches 'llama-typo\/'/);
    expect((await tierkit(['rm', '--cache', cache, 'llama-typo/', '--allow-empty'])).code).toBe(0);
  });

  it('ls groups by prefix with totals, filters by age and pins, sorts', async () => {
    const cache = join(work, 'ls');
    const t0 = Date.now();
    const at = (ms: number) => ({ TIERKIT_NOW_MS: String(ms) });
    expect((await tierkit(['warm', ...stackArgs('ls'), 'llama/'], at(t0 - 10 * 86_400_000))).code).toBe(0);
    expect((await tierkit(['warm', ...stackArgs('ls'), 'qwen/'], at(t0))).code).toBe(0);
    expect((await tierkit(['pin', '--cache', cache, 'qwen/model.safetensors'])).code).toBe(0);
    const grouped = await tierkit(['ls', '--cache', cache, '--by-prefix', '--json'], at(t0));
    expect(grouped.code, grouped.stderr).toBe(0);
    const llama = Object.keys(objects).filter((k) => k.startsWith('llama/'));
    const qwen = Object.keys(objects).filter((k) => k.startsWith('qwen/'));
    expect(JSON.parse(grouped.stdout)).toMatchObject({
      groups: [
        { prefix: 'llama/', entries: 4, bytes: total(llama), pinned: 0 },
        { prefix: 'qwen/', entries: 2, bytes: total(qwen), pinned: 1 },
      ],
      entries: 6,
      bytes: total([...llama, ...qwen]),
    });
    const text = await tierkit(['ls', '--cache', cache, '--by-prefix', '--sort', 'size'], at(t0));
    expect(text.stdout.split('\n')[1]).toMatch(/^llama\/ +4 /);
    expect(text.stdout).toMatch(/2 prefixes, 6 entries/);
    const old = JSON.parse(
      (await tierkit(['ls', '--cache', cache, '--older-than', '1w', '--json'], at(t0))).stdout,
    );
    expect(old.entries.map((e: { key: string }) => e.key)).toEqual(llama);
    const pinned = JSON.parse((await tierkit(['ls', '--cache', cache, '--pinned', '--json'], at(t0))).stdout);
    expect(pinned.entries.map((e: { key: string }) => e.key)).toEqual(['qwen/model.safetensors']);
    const bySize = JSON.parse(
      (await tierkit(['ls', '--cache', cache, '--sort', 'size', '--json'], at(t0))).stdout,
    );
    expect(bySize.entries[0].key).toBe('llama/model-00001.safetensors');
    const bad = await tierkit(['ls', '--cache', cache, '--sort', 'colour']);
    expect(bad.code).toBe(2);
  });

  it('purge --dry-run lists what would go and removes nothing', async () => {
    const cache = join(work, 'purge');
    const t0 = Date.now();
    const at = (ms: number) => ({ TIERKIT_NOW_MS: String(ms) });
    expect((await tierkit(['warm', ...stackArgs('purge'), 'llama/'], at(t0 - 10 * 86_400_000))).code).toBe(0);
    expect((await tierkit(['warm', ...stackArgs('purge'), 'qwen/'], at(t0))).code).toBe(0);
    const before = await cachedFiles(cache);
    const dry = await tierkit(
      ['purge', '--cache', cache, '--older-than', '1w', '--dry-run', '--json'],
      at(t0),
    );
    expect(dry.code, dry.stderr).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan.dryRun).toBe(true);
    expect([...plan.idle].sort()).toEqual(Object.keys(objects).filter((k) => k.startsWith('llama/')));
    expect(await cachedFiles(cache)).toEqual(before);
    const real = await tierkit(['purge', '--cache', cache, '--older-than', '1w', '--json'], at(t0));
    expect([...JSON.parse(real.stdout).idle].sort()).toEqual([...plan.idle].sort());
    expect(await cachedFiles(cache)).toEqual(['qwen/config.json', 'qwen/model.safetensors']);
  });
});

describe('start-up', () => {
  it('commands that use no S3 tier never load the AWS SDK', () => {
    // A module hook that refuses @tierkit/tier-s3 and @aws-sdk/*: a command that imports them fails.
    const hook = `export async function resolve(s, c, next) {
      if (s === '@tierkit/tier-s3' || s.startsWith('@aws-sdk/')) throw new Error('AWS SDK loaded: ' + s);
      return next(s, c);
    }`;
    const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
    const run = (...args: string[]) =>
      spawnSync(
        process.execPath,
        ['--import', `data:text/javascript,${encodeURIComponent(register)}`, CLI, ...args],
        {
          encoding: 'utf8',
          env: { PATH: process.env.PATH ?? '' },
        },
      );
    const cache = join(work, 'no-sdk');
    const origin = join(work, 'no-sdk-origin');
    mkdirSync(origin, { recursive: true });
    for (const args of [
      ['--help'],
      ['warm', '--help'],
      ['ls', '--cache', cache],
      ['purge', '--cache', cache, '--older-than', '1d'],
      ['verify', '--cache', cache],
      ['metrics', '--cache', cache],
      ['warm', '--cache', cache, '--origin', origin, '--allow-empty', 'x/'],
    ]) {
      const r = run(...args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    // The hook works: a command with an S3 origin does load the SDK, and fails under it.
    const s3run = run('warm', '--cache', cache, '--origin', originUrl, 'llama/');
    expect(s3run.status).not.toBe(0);
    expect(s3run.stderr).toMatch(/AWS SDK loaded: @tierkit\/tier-s3/);
  });
});

describe('the tierkit bin', () => {
  it('is a committed file (npm links it at install, before dist/ is built) that runs the built CLI', () => {
    const pkg = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8'));
    const bin = pkg.bin.tierkit as string;
    expect(bin.startsWith('./dist/')).toBe(false);
    expect(pkg.files).toContain('bin');
    const r = spawnSync(process.execPath, [join(PKG, bin), '--help'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^tierkit — pre-warm/);
  });

  it('starts libuv with a larger threadpool (fills queue fs steps on it), unless the user set its size', () => {
    const pkg = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8'));
    const bin = join(PKG, pkg.bin.tierkit as string);
    // Reports the process's threads at exit: the pool's threads are started by then (the loader read files).
    const probe = join(work, 'threads.cjs');
    writeFileSync(
      probe,
      [
        "process.on('exit', () => {",
        "  const n = require('node:fs').readdirSync('/proc/self/task').length;",
        "  process.stderr.write('threads=' + n + ' uv=' + process.env.UV_THREADPOOL_SIZE + '\\n');",
        '});',
      ].join('\n'),
    );
    const threads = (env: NodeJS.ProcessEnv) => {
      const r = spawnSync(process.execPath, ['--require', probe, bin, '--version'], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
      expect(r.status, r.stderr).toBe(0);
      const m = /threads=(\d+) uv=(\S+)/.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      return { threads: Number(m![1]), uv: m![2]! };
    };
    const ours = threads({ UV_THREADPOOL_SIZE: undefined });
    const users = threads({ UV_THREADPOOL_SIZE: '4' });
    expect(users.uv).toBe('4');
    const size = Number(ours.uv);
    expect(size).toBeGreaterThanOrEqual(8);
    // The pool really has that many threads: the size was set before libuv started it.
    expect(ours.threads - users.threads).toBe(size - 4);
  });

  it('`npx tierkit --help` works from the repository root', () => {
    const root = join(PKG, '..', '..');
    const r = spawnSync('npx', ['--no-install', 'tierkit', '--help'], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^tierkit — pre-warm/);
    expect(r.stdout).toMatch(/rm +remove cached objects/);
  });
});
