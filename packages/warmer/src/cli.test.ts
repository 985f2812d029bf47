/**
 * The `tierkit` CLI driven as a user would: a spawned process, real
 * directories, a real S3 server (s3rver on 127.0.0.1).
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createS3Tier, type S3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, cachedFiles, MiB, sha, tierkit } from './cli-harness.js';

const DAY = 86_400_000;
let s3: LocalS3;
let bucket: S3Tier;
let work: string;
let originUrl: string;

const objects: Record<string, Uint8Array> = {
  'llama/config.json': new TextEncoder().encode('{"model_type":"llama"}'),
  'llama/model-00001.safetensors': bytes(3 * MiB + 17, 1),
  'llama/model-00002.safetensors': bytes(2 * MiB, 2),
  'llama/tokenizer.json': bytes(200_000, 3),
};

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'tierkit-warmer-'));
  await chmod(work, 0o755);
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

describe('tierkit warm', () => {
  it('warms with progress, skips what is fresh, refetches only what changed', async () => {
    const cache = join(work, 'warm-cache');
    const args = ['warm', '--cache', cache, '--origin', originUrl, 'llama/', '--block-size', '1MiB'];
    const first = await tierkit(args);
    expect(first.code, first.stderr).toBe(0);
    // Not a TTY: plain progress lines, ending at 100%.
    expect(first.stderr).toMatch(/progress \d+% \d\/4 files/);
    expect(first.stderr).toMatch(/progress 100% 4\/4 files/);
    expect(first.stdout).toMatch(/fetched +llama\/model-00001\.safetensors/);
    expect(first.stdout).toMatch(/4 fetched, 0 refetched .*, 0 fresh \(skipped\), 0 failed/);
    for (const [k, v] of Object.entries(objects)) expect(sha(await readFile(join(cache, k)))).toBe(sha(v));

    const again = await tierkit([...args, '--json']);
    expect(again.code, again.stderr).toBe(0);
    const s2 = JSON.parse(again.stdout);
    expect(s2).toMatchObject({
      command: 'warm',
      fetched: 0,
      refetched: 0,
      fresh: 4,
      failed: 0,
      bytesFetched: 0,
    });

    const changed = bytes(1 * MiB, 9);
    await bucket.write('llama/model-00002.safetensors', changed);
    const third = await tierkit([...args, '--json']);
    expect(third.code, third.stderr).toBe(0);
    const s3sum = JSON.parse(third.stdout);
    expect(s3sum).toMatchObject({ fetched: 0, refetched: 1, fresh: 3, bytesFetched: changed.byteLength });
    const item = s3sum.items.find((i: { key: string }) => i.key === 'llama/model-00002.safetensors');
    expect(item).toMatchObject({ status: 'refetched', reason: 'changed', sha256: sha(changed) });
    expect(sha(await readFile(join(cache, 'llama/model-00002.safetensors')))).toBe(sha(changed));
    await bucket.write('llama/model-00002.safetensors', objects['llama/model-00002.safetensors']!);

    // ls shows what is there, with pins and states; --json parses.
    const ls = await tierkit(['ls', '--cache', cache, '--json']);
    expect(ls.code, ls.stderr).toBe(0);
    const entries = JSON.parse(ls.stdout).entries;
    expect(entries.map((e: { key: string }) => e.key)).toEqual(Object.keys(objects).sort());
    expect(entries.every((e: { state: string; sha256: string }) => e.state === 'cached' && e.sha256)).toBe(
      true,
    );
  });

  it('reads a Practicus model.json and a YAML config with env overrides', async () => {
    const dir = join(work, 'practicus');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'model.json'),
      JSON.stringify({ download_files_from: 'llama/', download_files_to: 'cache' }),
    );
    await writeFile(join(dir, 'tierkit.yaml'), `origin: ${JSON.stringify(originUrl)}\nconcurrency: 2\n`);
    const r = await tierkit(['warm', '--manifest', join(dir, 'model.json'), '--json'], {
      TIERKIT_CONFIG: join(dir, 'tierkit.yaml'),
      TIERKIT_CONCURRENCY: '3',
    });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ fetched: 4, failed: 0 });
    expect(await cachedFiles(join(dir, 'cache'))).toEqual(Object.keys(objects).sort());

    // A glob warms only what matches; the disable switch bypasses the cache.
    const off = await tierkit(['warm', '--cache', join(work, 'off'), '--origin', originUrl, 'llama/*.json'], {
      TIERKIT_DISABLE_CACHE: '1',
    });
    expect(off.code).toBe(0);
    expect(off.stderr).toMatch(/cache disabled/);
    expect(await cachedFiles(join(work, 'off'))).toEqual([]);
    const glob = await tierkit([
      'warm',
      '--cache',
      join(work, 'glob'),
      '--origin',
      originUrl,
      'llama/*.json',
      '--json',
    ]);
    expect(JSON.parse(glob.stdout).items.map((i: { key: string }) => i.key)).toEqual([
      'llama/config.json',
      'llama/tokenizer.json',
    ]);
  });
});

describe('tierkit verify', () => {
  it('detects a corrupted byte and a file edited outside tierkit, and drops them on request', async () => {
    const cache = join(work, 'verify-cache');
    const w = await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/']);
    expect(w.code, w.stderr).toBe(0);
    const clean = await tierkit(['verify', '--cache', cache, '--origin', originUrl, '--json']);
    expect(clean.code, clean.stderr).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({ ok: 4, bad: 0 });

    // Bit rot: one byte flipped in place, timestamps restored (the file's identity is unchanged).
    const target = join(cache, 'llama/model-00001.safetensors');
    const ref = join(work, 'ref-times');
    expect(spawnSync('cp', ['-p', target, ref]).status).toBe(0);
    const fh = await open(target, 'r+');
    const one = new Uint8Array(1);
    await fh.read(one, 0, 1, 1234);
    one[0] = one[0]! ^ 0xff;
    await fh.write(one, 0, 1, 1234);
    await fh.close();
    expect(spawnSync('touch', ['-r', ref, target]).status).toBe(0);
    // An edit that changes the mtime too.
    const other = join(cache, 'llama/tokenizer.json');
    const fh2 = await open(other, 'r+');
    await fh2.write(new Uint8Array([1, 2, 3]), 0, 3, 10);
    await fh2.close();

    const bad = await tierkit(['verify', '--cache', cache, '--origin', originUrl, '--json']);
    expect(bad.code).toBe(1);
    const report = JSON.parse(bad.stdout);
    const status = Object.fromEntries(
      report.items.map((i: { key: string; status: string }) => [i.key, i.status]),
    );
    expect(status).toEqual({
      'llama/config.json': 'ok',
      'llama/model-00001.safetensors': 'corrupt',
      'llama/model-00002.safetensors': 'ok',
      'llama/tokenizer.json': 'modified',
    });
    const human = await tierkit(['verify', '--cache', cache]);
    expect(human.code).toBe(1);
    expect(human.stderr).toMatch(/corrupt +llama\/model-00001\.safetensors +sha256 .* differs/);
    expect(human.stderr).toMatch(/tierkit verify --drop/);

    const drop = await tierkit(['verify', '--cache', cache, '--drop', '--json']);
    expect(JSON.parse(drop.stdout)).toMatchObject({ dropped: 2 });
    // It repaired what it found: `tierkit verify --drop && tierkit warm …` goes on to the warm.
    expect(drop.code, drop.stderr).toBe(0);
    expect(await cachedFiles(cache)).toEqual(['llama/config.json', 'llama/model-00002.safetensors']);
    const rewarm = await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/', '--json']);
    expect(JSON.parse(rewarm.stdout)).toMatchObject({ fetched: 2, fresh: 2 });
    expect((await tierkit(['verify', '--cache', cache, '--origin', originUrl])).code).toBe(0);
  });
});

describe('tierkit purge and pin', () => {
  it('purges by idle time with a controllable clock; pinned entries survive purge and capacity pressure', async () => {
    const cache = join(work, 'purge-cache');
    const t0 = Date.now();
    const at = (ms: number) => ({ TIERKIT_NOW_MS: String(ms) });
    const base = ['--cache', cache, '--origin', originUrl];
    expect((await tierkit(['warm', ...base, 'llama/config.json', 'llama/tokenizer.json'], at(t0))).code).toBe(
      0,
    );
    expect((await tierkit(['warm', ...base, 'llama/model-00002.safetensors'], at(t0 + 2 * DAY))).code).toBe(
      0,
    );
    const pin = await tierkit(['pin', '--cache', cache, 'llama/config.json']);
    expect(pin.code, pin.stderr).toBe(0);

    const ls = await tierkit(['ls', '--cache', cache], at(t0 + 3 * DAY));
    expect(ls.stdout).toMatch(/llama\/config\.json +22 B +cached +3d ago +pinned/);

    // At t0+3d, 1w: nothing is that old; 2d: the first two, except the pinned one.
    const none = await tierkit(['purge', '--cache', cache, '--older-than', '1w', '--json'], at(t0 + 3 * DAY));
    expect(none.code, none.stderr).toBe(0);
    expect(JSON.parse(none.stdout).idle).toEqual([]);
    const some = await tierkit(['purge', '--cache', cache, '--older-than', '2d', '--json'], at(t0 + 3 * DAY));
    expect(JSON.parse(some.stdout).idle).toEqual(['llama/tokenizer.json']);
    expect(await cachedFiles(cache)).toEqual(['llama/config.json', 'llama/model-00002.safetensors']);

    // Capacity pressure: a 4 MiB cache; the pinned entry stays, the unpinned one goes.
    const small = `file://${cache}?maxBytes=4MiB`;
    const big = await tierkit(
      ['warm', '--cache', small, '--origin', originUrl, 'llama/model-00001.safetensors'],
      at(t0 + 4 * DAY),
    );
    expect(big.code, big.stderr).toBe(0);
    expect(await cachedFiles(cache)).toEqual(['llama/config.json', 'llama/model-00001.safetensors']);

    // Down to a byte budget: least recently used first, pins kept.
    const budget = await tierkit(
      ['purge', '--cache', cache, '--max-bytes', '1KiB', '--json'],
      at(t0 + 5 * DAY),
    );
    expect(JSON.parse(budget.stdout).overBudget).toEqual(['llama/model-00001.safetensors']);
    expect(await cachedFiles(cache)).toEqual(['llama/config.json']);
    expect((await tierkit(['unpin', '--cache', cache, 'llama/config.json'])).code).toBe(0);
    const all = await tierkit(['purge', '--cache', cache, '--max-bytes', '0', '--json'], at(t0 + 5 * DAY));
    expect(JSON.parse(all.stdout).overBudget).toEqual(['llama/config.json']);
  });

  it('exposes Prometheus metrics', async () => {
    const cache = join(work, 'metrics-cache');
    await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/config.json']);
    const m = await tierkit(['metrics', '--cache', cache]);
    expect(m.code, m.stderr).toBe(0);
    expect(m.stdout).toMatch(/# TYPE tierkit_cache_bytes gauge/);
    expect(m.stdout).toMatch(/tierkit_cache_entries\{tier="cache"\} 1/);
    expect(m.stdout).toMatch(/# TYPE tierkit_read_duration_seconds histogram/);
  });
});

describe('bad input', () => {
  it('unknown flags, bad durations and sizes, missing settings: usage errors (exit 2)', async () => {
    const cases: [string[], RegExp][] = [
      [['warm', '--bogus'], /Unknown option '--bogus'.*tierkit warm --help/],
      [
        ['purge', '--cache', join(work, 'x'), '--older-than', '1 fortnight'],
        /--older-than: invalid duration/,
      ],
      [['purge', '--cache', join(work, 'x'), '--max-bytes', 'lots'], /is not a size/],
      [['warm', '--origin', originUrl, 'llama/'], /no cache given: pass --cache/],
      [['warm', '--cache', join(work, 'x')], /nothing to warm/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['purge', '--cache', join(work, 'x'), '--older-than', '2'], /needs a unit/],
      [['purge', '--cache', join(work, 'x'), '--older-than', '2', 'weeks'], /unexpected argument 'weeks'/],
      [
        ['warm', '--cache', join(work, 'x'), '--origin', originUrl, '--concurrency', '0', 'a'],
        /--concurrency/,
      ],
    ];
    for (const [args, re] of cases) {
      const r = await tierkit(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(re);
    }
    const bad = await tierkit(['purge', '--cache', join(work, 'x'), '--older-than', '1 fortnight'], {
      TIERKIT_PURGE_UNUSED_AFTER: 'soon',
    });
    expect(bad.code).toBe(2);
    expect(await cachedFiles(join(work, 'x'))).toEqual([]);
    const help = await tierkit(['verify', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Examples:\n {2}tierkit verify/);
  });

  it('an unreachable origin fails clearly, nothing half-written', async () => {
    const cache = join(work, 'unreachable');
    const r = await tierkit(
      [
        'warm',
        '--cache',
        cache,
        '--origin',
        's3://models?endpoint=http://127.0.0.1:9&forcePathStyle=true',
        'llama/',
        '--json',
      ],
      {},
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/tierkit warm: error: /);
    expect(r.stderr).toMatch(/hint: check --origin/);
    expect(JSON.parse(r.stdout).error.code).toBeTruthy();
    expect(await cachedFiles(cache)).toEqual([]);
  }, 60_000);

  it('a cache directory without permission fails clearly, nothing half-written', async () => {
    const cache = join(work, 'locked');
    await mkdir(cache, { mode: 0o755 });
    const root = process.getuid?.() === 0;
    if (!root) await chmod(cache, 0o555);
    const r = await tierkit(
      ['warm', '--cache', cache, '--origin', originUrl, 'llama/config.json'],
      { HOME: '/nonexistent' },
      root ? { uid: 65534 } : {},
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/permission denied .*give this process read and write access/);
    expect(await readdir(cache)).toEqual([]);
  });
});

describe('pin and unpin prefixes, the MLIS disable switch, in-place edits', () => {
  it('pins and unpins a prefix or glob: what is cached, and with --origin what is not yet', async () => {
    const cache = join(work, 'pin-prefix');
    expect((await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/*.json'])).code).toBe(0);
    const pin = await tierkit(['pin', '--cache', cache, 'llama/', '--json']);
    expect(pin.code, pin.stderr).toBe(0);
    expect(JSON.parse(pin.stdout).entries.map((e: { key: string }) => e.key)).toEqual([
      'llama/config.json',
      'llama/tokenizer.json',
    ]);
    const pinnedKeys = async () =>
      JSON.parse((await tierkit(['ls', '--cache', cache, '--json'])).stdout)
        .entries.filter((e: { pinned: boolean }) => e.pinned)
        .map((e: { key: string }) => e.key);
    expect(await pinnedKeys()).toEqual(['llama/config.json', 'llama/tokenizer.json']);
    // With the origin, objects not cached yet are pinned too, and stay pinned once warmed.
    const all = await tierkit(['pin', '--cache', cache, '--origin', originUrl, 'llama/*.safetensors']);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/pinned +llama\/model-00001\.safetensors +\(not cached yet\)/);
    expect((await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/'])).code).toBe(0);
    expect(await pinnedKeys()).toEqual(Object.keys(objects).sort());
    const unpin = await tierkit(['unpin', '--cache', cache, 'llama/']);
    expect(unpin.code, unpin.stderr).toBe(0);
    expect(await pinnedKeys()).toEqual([]);
    // A prefix that matches nothing says so (exit 1); a bad key is a usage error.
    const none = await tierkit(['pin', '--cache', cache, 'mistral/']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/nothing cached matches 'mistral\/' \(give --origin/);
    expect((await tierkit(['pin', '--cache', cache, 'a//b'])).code).toBe(2);
  });

  it('AIOLI_DISABLE_MODEL_CACHE=true disables the cache like TIERKIT_DISABLE_CACHE', async () => {
    const cache = join(work, 'aioli');
    const off = await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/config.json'], {
      AIOLI_DISABLE_MODEL_CACHE: 'true',
    });
    expect(off.code, off.stderr).toBe(0);
    expect(off.stderr).toMatch(/cache disabled/);
    expect(await cachedFiles(cache)).toEqual([]);
    // TIERKIT_DISABLE_CACHE, when set, wins.
    const on = await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/config.json'], {
      AIOLI_DISABLE_MODEL_CACHE: 'true',
      TIERKIT_DISABLE_CACHE: '0',
    });
    expect(on.code, on.stderr).toBe(0);
    expect(await cachedFiles(cache)).toEqual(['llama/config.json']);
    const bad = await tierkit(['ls', '--cache', cache], { AIOLI_DISABLE_MODEL_CACHE: 'perhaps' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/AIOLI_DISABLE_MODEL_CACHE: expected 1\/0, true\/false/);
  });

  it('verify and warm say that a file edited in place changed', async () => {
    const cache = join(work, 'edited');
    expect((await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/config.json'])).code).toBe(
      0,
    );
    await writeFile(join(cache, 'llama/config.json'), '{"model_type":"mistral"}');
    const v = await tierkit(['verify', '--cache', cache, '--origin', originUrl]);
    expect(v.code).toBe(1);
    expect(v.stderr).toMatch(/modified +llama\/config\.json +changed: the file was edited in place/);
    expect(v.stderr).not.toMatch(/does not record/);
    const w = await tierkit(['warm', '--cache', cache, '--origin', originUrl, 'llama/config.json']);
    expect(w.stdout).toMatch(/refetched +llama\/config\.json .*\(the cached file was edited in place\)/);
  });
});

describe('a directory origin', () => {
  it('on a read-only bind mount: warm, ls --check and cat work, and nothing is written into it', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to make a read-only bind mount');
    const share = join(work, 'share-src');
    const mnt = join(work, 'share-ro');
    for (const [k, v] of Object.entries(objects)) {
      await mkdir(join(share, k, '..'), { recursive: true });
      await writeFile(join(share, k), v);
    }
    await mkdir(mnt, { recursive: true });
    const bind = spawnSync('mount', ['--bind', share, mnt], { encoding: 'utf8' });
    if (bind.status !== 0) return t.skip(`the kernel refused a bind mount here: ${bind.stderr.trim()}`);
    try {
      const ro = spawnSync('mount', ['-o', 'remount,bind,ro', mnt], { encoding: 'utf8' });
      expect(ro.status, ro.stderr).toBe(0);
      const cache = join(work, 'from-ro');
      const w = await tierkit(['warm', '--cache', cache, '--origin', mnt, 'llama/', '--json']);
      expect(w.code, w.stderr).toBe(0);
      expect(JSON.parse(w.stdout)).toMatchObject({ fetched: 4, failed: 0 });
      for (const [k, v] of Object.entries(objects)) expect(sha(await readFile(join(cache, k)))).toBe(sha(v));
      const ls = await tierkit(['ls', '--cache', cache, '--origin', mnt, '--check', '--json']);
      expect(ls.code, ls.stderr).toBe(0);
      expect(JSON.parse(ls.stdout).entries.every((e: { state: string }) => e.state === 'fresh')).toBe(true);
      const cat = await tierkit([
        'cat',
        '--cache',
        join(work, 'from-ro-2'),
        '--origin',
        mnt,
        'llama/config.json',
      ]);
      expect(cat.code, cat.stderr).toBe(0);
      expect(cat.stdoutBytes.equals(Buffer.from(objects['llama/config.json']!))).toBe(true);
      // Nothing was written into the share: the source directory holds exactly the objects.
      expect((await readdir(share)).sort()).toEqual(['llama']);
      expect(await cachedFiles(share)).toEqual(Object.keys(objects).sort());
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('an unreadable or missing origin names the real cause, not S3', async (t) => {
    const missing = await tierkit([
      'warm',
      '--cache',
      join(work, 'c-missing'),
      '--origin',
      join(work, 'nope'),
      'm/',
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/does not exist .*is the share mounted/);
    expect(missing.stderr).not.toMatch(/AWS|endpoint|bucket/);
    if (process.getuid?.() !== 0) return t.skip('needs root to run the CLI as another user');
    const locked = join(work, 'locked-share');
    await mkdir(join(locked, 'm'), { recursive: true });
    await writeFile(join(locked, 'm', 'a.bin'), 'x');
    await chmod(locked, 0o700);
    const cache = join(work, 'c-locked');
    await mkdir(cache, { mode: 0o777 });
    await chmod(cache, 0o777);
    const r = await tierkit(
      ['warm', '--cache', cache, '--origin', locked, 'm/'],
      { HOME: '/nonexistent' },
      { uid: 65534 },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/permission denied/i);
    expect(r.stderr).toMatch(new RegExp(locked));
    expect(r.stderr).not.toMatch(/AWS|endpoint|bucket/);
  });
});
