/**
 * `tierkit … --lmcache DIR`: an LMCache GDS cache directory managed in place,
 * on copies of the golden directories written from LMCache's own source
 * (packages/lmcache/test-fixtures/golden).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, readdir, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, tierkit } from './cli-harness.js';

const GOLDEN = fileURLToPath(new URL('../../lmcache/test-fixtures/golden', import.meta.url));
interface GoldenEntry {
  key: string;
  nbytes: number;
  dtype: string;
  shape: number[];
  path: string;
}
const golden: GoldenEntry[] = JSON.parse(readFileSync(join(GOLDEN, 'manifest.json'), 'utf8')).gds;
const HEADER = 4096;
const entryBytes = (e: GoldenEntry) => HEADER + e.nbytes + HEADER; // data (header + tensor) and .metadata

let work: string;
let dir: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'tierkit-lmcache-'));
  dir = join(work, 'gds');
  await cp(join(GOLDEN, 'gds'), dir, { recursive: true });
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Every file under `root` and its size (what `du` counts, in bytes). */
async function files(root: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const rel of await readdir(root, { recursive: true })) {
    const s = await stat(join(root, rel));
    if (s.isFile()) out.set(rel, s.size);
  }
  return out;
}
const du = async (root: string) => [...(await files(root)).values()].reduce((a, b) => a + b, 0);
const dataPath = (e: GoldenEntry) => join(work, e.path);

/** Gives the golden entries distinct last-use times: index 0 is the oldest. */
async function age(order: GoldenEntry[], base = Date.now() - 10 * 86_400_000): Promise<void> {
  for (const [i, e] of order.entries()) {
    const t = new Date(base + i * 3_600_000);
    await utimes(dataPath(e), t, t);
    await utimes(`${dataPath(e)}.metadata`, t, t);
  }
}

describe('tierkit --lmcache: an LMCache GDS directory in place', () => {
  it('ls lists every golden entry with its bytes; stat gives dtype and shape', async () => {
    const ls = await tierkit(['ls', '--lmcache', dir, '--json']);
    expect(ls.code, ls.stderr).toBe(0);
    const doc = JSON.parse(ls.stdout);
    expect(doc.entries.map((e: { key: string }) => e.key).sort()).toEqual(golden.map((g) => g.key).sort());
    for (const g of golden) {
      const e = doc.entries.find((x: { key: string }) => x.key === g.key);
      expect(e).toMatchObject({ dataBytes: HEADER + g.nbytes, metadataBytes: HEADER, state: 'complete' });
    }
    expect(doc.totalBytes).toBe(await du(dir));
    const text = await tierkit(['ls', '--lmcache', dir, 'meta-llama/']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^4 entries, /m);

    const st = await tierkit(['stat', '--lmcache', dir, '--json', ...golden.map((g) => g.key)]);
    expect(st.code, st.stderr).toBe(0);
    for (const [i, g] of golden.entries())
      expect(JSON.parse(st.stdout).entries[i]).toMatchObject({
        key: g.key,
        cached: true,
        dtype: g.dtype,
        shape: g.shape,
      });
    const missing = await tierkit(['stat', '--lmcache', dir, 'nope@1@0@1@bfloat16']);
    expect(missing.code).toBe(1);
  });

  it('verify passes on the golden directory and names a truncated file and a missing .metadata (exit 1)', async () => {
    const ok = await tierkit(['verify', '--lmcache', dir, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ checked: golden.length, problems: [], ok: true });
    await truncate(dataPath(golden[0]!), HEADER + 10);
    await rm(`${dataPath(golden[1]!)}.metadata`);
    const bad = await tierkit(['verify', '--lmcache', dir, '--json']);
    expect(bad.code).toBe(1);
    const problems = JSON.parse(bad.stdout).problems as { key: string; problem: string }[];
    expect(problems.map((p) => p.key).sort()).toEqual([golden[0]!.key, golden[1]!.key].sort());
    expect(problems.find((p) => p.key === golden[0]!.key)!.problem).toMatch(/truncated/);
    const one = await tierkit(['verify', '--lmcache', dir, golden[2]!.key]);
    expect(one.code, one.stderr).toBe(0);
    const drop = await tierkit(['verify', '--lmcache', dir, '--drop']);
    expect(drop.code).toBe(2);
    expect(drop.stderr).toMatch(/purge --lmcache/);
  });

  it('purge --max-bytes: least recently used first, --dry-run removes nothing, the bytes leave the disk', async () => {
    const order = [...golden].sort((a, b) => (a.key < b.key ? -1 : 1));
    await age(order);
    const before = await du(dir);
    // Room for the three most recently used entries.
    const keep = order.slice(-3);
    const budget = keep.reduce((n, e) => n + entryBytes(e), 0);
    const dry = await tierkit([
      'purge',
      '--lmcache',
      dir,
      '--max-bytes',
      String(budget),
      '--dry-run',
      '--json',
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    const planned = JSON.parse(dry.stdout);
    expect(planned.dryRun).toBe(true);
    expect(planned.removed.map((r: { key: string }) => r.key)).toEqual(order.slice(0, -3).map((e) => e.key));
    expect(await du(dir)).toBe(before);

    const real = await tierkit(['purge', '--lmcache', dir, '--max-bytes', String(budget), '--json']);
    expect(real.code, real.stderr).toBe(0);
    const r = JSON.parse(real.stdout);
    expect(r.removed.map((x: { key: string }) => x.key)).toEqual(
      planned.removed.map((x: { key: string }) => x.key),
    );
    expect(r.removed.reduce((n: number, x: { bytes: number }) => n + x.bytes, 0)).toBe(before - budget);
    expect(await du(dir)).toBe(budget);
    expect(r).toMatchObject({ bytesBefore: before, bytesAfter: budget, entriesAfter: 3 });
    const left = [...(await files(dir)).keys()].map((f) => join(dir, f)).sort();
    expect(left).toEqual(keep.flatMap((e) => [dataPath(e), `${dataPath(e)}.metadata`]).sort());
  });

  it('purge --older-than uses the files’ last use (TIERKIT_NOW_MS fixes the clock)', async () => {
    const now = Date.now();
    await age(golden, now - 5 * 86_400_000); // one hour apart, from 5 days ago
    const r = await tierkit(['purge', '--lmcache', dir, '--older-than', '4d22h', '--json'], {
      TIERKIT_NOW_MS: String(now),
    });
    expect(r.code, r.stderr).toBe(0);
    // 5d, 5d-1h, 5d-2h are at least 4d22h old.
    expect(JSON.parse(r.stdout).removed.map((x: { key: string }) => x.key)).toEqual(
      golden.slice(0, 3).map((e) => e.key),
    );
    expect(await du(dir)).toBe(golden.slice(3).reduce((n, e) => n + entryBytes(e), 0));
  });

  it('--lmcache-config reads gds_path from an LMCache YAML file or from LMCACHE_* variables', async () => {
    const yaml = join(work, 'lmcache.yaml');
    await writeFile(
      yaml,
      `chunk_size: 256\nlocal_cpu: false\ngds_path: "${dir}"\ncufile_buffer_size: 8192\n`,
    );
    const fromFile = await tierkit(['ls', '--lmcache-config', yaml, '--json']);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(JSON.parse(fromFile.stdout).entries).toHaveLength(golden.length);
    const fromEnv = await tierkit(['verify', '--lmcache-config', 'env', '--json'], { LMCACHE_GDS_PATH: dir });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    expect(JSON.parse(fromEnv.stdout).checked).toBe(golden.length);
    const viaVar = await tierkit(['ls', '--json'], { TIERKIT_LMCACHE: dir });
    expect(JSON.parse(viaVar.stdout).entries).toHaveLength(golden.length);
    const noPath = await tierkit(['ls', '--lmcache-config', 'env']);
    expect(noPath.code).not.toBe(0);
    expect(noPath.stderr).toMatch(/gds_path/);
    const both = await tierkit(['ls', '--lmcache', dir, '--cache', work]);
    expect(both.code).toBe(2);
  });

  it('metrics prints the directory’s bytes and entries', async () => {
    const r = await tierkit(['metrics', '--lmcache', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`tierkit_lmcache_gds_bytes ${await du(dir)}`);
    expect(r.stdout).toContain(`tierkit_lmcache_gds_entries ${golden.length}`);
    expect(r.stdout).toContain('tierkit_lmcache_gds_evictions_total 0');
  });

  it('purge --every runs as a sidecar: holds the budget as entries come back, stops cleanly on SIGTERM', async () => {
    const order = [...golden].sort((a, b) => (a.key < b.key ? -1 : 1));
    // Copied from the fixtures, not from dir: reading dir's files would move their atime (last use).
    const saved = join(work, 'saved');
    await cp(join(GOLDEN, 'gds'), saved, { recursive: true });
    await age(order);
    const keep = order.slice(-3);
    const budget = keep.reduce((n, e) => n + entryBytes(e), 0);
    const child = spawn(
      process.execPath,
      [CLI, 'purge', '--lmcache', dir, '--max-bytes', String(budget), '--every', '1s', '--json'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } },
    );
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const reports: { removed: { key: string; bytes: number }[]; bytesAfter: number }[] = [];
    let buf = '';
    let wake: (() => void) | undefined;
    child.stdout.on('data', (d) => {
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        reports.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
      }
      wake?.();
    });
    let closed = false;
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => {
        closed = true;
        wake?.();
        resolve(code);
      }),
    );
    const until = async (pred: () => boolean) => {
      while (!pred()) {
        if (closed) throw new Error(`the sidecar exited: ${stderr}`);
        await new Promise<void>((r) => (wake = r));
      }
    };
    try {
      await until(() => reports.length >= 1);
      expect(reports[0]!.removed).toHaveLength(golden.length - 3);
      expect(await du(dir)).toBe(budget);
      // LMCache writes two older chunks again (data first, then its .metadata, both fresh).
      const back = order.slice(0, 2);
      for (const e of back) {
        const rel = e.path.slice('gds/'.length);
        await cp(join(saved, rel), dataPath(e));
        await cp(join(saved, `${rel}.metadata`), `${dataPath(e)}.metadata`);
      }
      const seen = reports.length;
      // One run or two (LMCache's files may arrive between runs): the same two victims.
      await until(() => reports.slice(seen).flatMap((r) => r.removed).length >= 2);
      // The fresh chunks are now the most recently used: the oldest of the kept ones go.
      const removed = reports.slice(seen).flatMap((r) => r.removed.map((x) => x.key));
      expect(removed.sort()).toEqual(
        keep
          .slice(0, 2)
          .map((e) => e.key)
          .sort(),
      );
      expect(await du(dir)).toBeLessThanOrEqual(budget);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, stderr).toBe(0);
    expect(stderr).toMatch(/purging .* every 1s/);
    expect(stderr).toMatch(/stopped/);
  });
});
