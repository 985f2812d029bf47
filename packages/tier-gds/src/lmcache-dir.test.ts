import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { encodeGdsHeader, gdsDataPath } from '@tierkit/lmcache';
import { pythonMissing, referenceScript } from '@tierkit/lmcache/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  GdsTier,
  LmcacheGdsDirectory,
  type PurgeReport,
  parseLmcacheConfig,
  startLmcachePurger,
} from './index.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tierkit-lmdir-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function allFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) =>
    statSync(join(dir, f)).isFile(),
  );
}

async function lmcacheEntry(key: string, withMetadata = true): Promise<string> {
  const header = encodeGdsHeader({ dtype: 'BF16', shape: [2, 1, 4, 8], fmt: 1 });
  const file = gdsDataPath(root, key);
  await mkdir(join(file, '..'), { recursive: true });
  await writeFile(file, Buffer.concat([header, Buffer.alloc(128, 1)]));
  if (withMetadata) await writeFile(`${file}.metadata`, header);
  return file;
}

describe('an LMCache GDS directory in place', () => {
  it('never leaves a half entry: orphan .metadata goes, a data file past the grace period gets one', async () => {
    const orphan = await lmcacheEntry('m@1@0@1234567890@bfloat16');
    await rm(orphan);
    const pending = await lmcacheEntry('m@1@0@2234567890@bfloat16', false);
    let clock = Date.now();
    const dir = new LmcacheGdsDirectory({ paths: [root], graceMs: 60_000, now: () => clock });
    expect((await dir.verify()).map((p) => p.problem).sort()).toEqual([
      '.metadata without its data file (LMCache will fail to load it)',
      'missing .metadata (LMCache will not load it)',
    ]);
    let report = await dir.purge({ maxBytes: 0 });
    // The orphan .metadata is gone; the data file waiting for its .metadata is not a victim yet.
    expect(existsSync(`${orphan}.metadata`)).toBe(false);
    expect(report.removed).toEqual([]);
    expect(existsSync(pending)).toBe(true);
    // Past the grace period its .metadata is written from its own header, and it can go.
    clock += 120_000;
    report = await dir.purge({});
    expect(report.healed).toBe(1);
    expect(await dir.verify()).toEqual([]);
    report = await dir.purge({ maxBytes: 0 });
    expect(report.removed).toEqual([{ key: 'm@1@0@2234567890@bfloat16', bytes: 4096 + 128 + 4096 }]);
    expect(allFiles(root)).toEqual([]);
    expect(dir.metrics).toMatchObject({
      evictedEntries: 1,
      evictedBytes: 8320,
      healedMetadata: 1,
      purgeRuns: 3,
    });
    expect(dir.prometheus()).toMatch(
      /# TYPE tierkit_lmcache_gds_evictions_total counter\ntierkit_lmcache_gds_evictions_total 1\n/,
    );
  });

  it("looking at entries (ls, stat, verify, describe) leaves their atime, the purge's last use, alone", async () => {
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off', kvShape: [2, 1, 4, 8] });
    const key = 'm@1@0@40000000@bfloat16';
    await tier.write(key, new Uint8Array(2 * 1 * 4 * 8 * 2));
    const path = gdsDataPath(root, key);
    const { utimes } = await import('node:fs/promises');
    // Two days old: relatime would move an atime this old on the next plain read.
    const old = new Date(Date.now() - 2 * 86_400_000);
    await utimes(path, old, old);
    const dir = LmcacheGdsDirectory.fromLmcacheConfig(parseLmcacheConfig(`gds_path: "${root}"`));
    expect((await dir.stat(key))?.header).toMatchObject({ dtype: 'BF16', shape: [2, 1, 4, 8] });
    expect(await dir.verify()).toEqual([]);
    expect(await tier.stat(key)).toBeDefined();
    expect(await tier.describe(key)).toBeDefined();
    for await (const _ of tier.list()) {
      // listing is looking too
    }
    expect(Math.abs(statSync(path).atimeMs - old.getTime())).toBeLessThan(1);
    // A read that serves the bytes is a use, as LMCache's own reads are.
    await tier.read(key);
    const mount = readFileSync('/proc/self/mounts', 'utf8');
    if (!/noatime/.test(mount.split('\n').find((l) => l.split(' ')[1] === '/') ?? '')) {
      expect(statSync(path).atimeMs).toBeGreaterThan(old.getTime() + 1000);
    }
    await tier.close();
  });

  it('purges least recently used first, by age, by prefix, and dry-runs without touching anything', async () => {
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off' });
    for (let i = 0; i < 4; i++) await tier.write(`m@1@0@${i + 1}0000000@bfloat16`, new Uint8Array(64));
    const dir = LmcacheGdsDirectory.fromLmcacheConfig(parseLmcacheConfig(`gds_path: "${root}"`));
    expect(dir.layout.roots).toEqual([root]);
    const { utimes } = await import('node:fs/promises');
    for (let i = 0; i < 4; i++) {
      const t = new Date(Date.now() - (10 - i) * 3_600_000);
      await utimes(gdsDataPath(root, `m@1@0@${i + 1}0000000@bfloat16`), t, t);
    }
    const entry = 4096 + 64 + 4096;
    const dry = await dir.purge({ maxBytes: 2 * entry, dryRun: true });
    expect(dry.removed.map((r) => r.key)).toEqual(['m@1@0@10000000@bfloat16', 'm@1@0@20000000@bfloat16']);
    expect(allFiles(root)).toHaveLength(8);
    const byAge = await dir.purge({ olderThanMs: 9.5 * 3_600_000 });
    expect(byAge.removed.map((r) => r.key)).toEqual(['m@1@0@10000000@bfloat16']);
    const budget = await dir.purge({ maxBytes: 2 * entry });
    expect(budget.removed.map((r) => r.key)).toEqual(['m@1@0@20000000@bfloat16']);
    expect(budget.bytesAfter).toBe(2 * entry);
    expect((await dir.stat('m@1@0@30000000@bfloat16'))?.header).toMatchObject({ dtype: 'U8', shape: [64] });
    expect(await dir.stat('m@1@0@10000000@bfloat16')).toBeUndefined();
    await expect(dir.purge({ maxBytes: -1 })).rejects.toThrow(/maxBytes must be >= 0/);
    await tier.close();
  });

  it("with a prefix, maxBytes bounds that prefix's entries; the others are not touched", async () => {
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off' });
    const keys = ['a@1@0@1000000@bfloat16', 'a@1@0@2000000@bfloat16', 'a@1@0@3000000@bfloat16'];
    const others = ['b@1@0@4000000@bfloat16', 'b@1@0@5000000@bfloat16'];
    for (const k of [...others, ...keys]) await tier.write(k, new Uint8Array(64));
    const { utimes } = await import('node:fs/promises');
    // b's entries are the oldest of all: a whole-directory purge would take them first.
    for (const [i, k] of [...others, ...keys].entries()) {
      const t = new Date(Date.now() - (10 - i) * 3_600_000);
      await utimes(gdsDataPath(root, k), t, t);
    }
    const dir = LmcacheGdsDirectory.fromLmcacheConfig(parseLmcacheConfig(`gds_path: "${root}"`));
    const entry = 4096 + 64 + 4096;
    const report = await dir.purge({ prefix: 'a@', maxBytes: entry });
    expect(report.removed.map((r) => r.key)).toEqual(keys.slice(0, 2));
    expect(report.bytesAfter).toBe(entry);
    for (const k of others) expect(await dir.stat(k)).toBeDefined();
    expect(await dir.stat(keys[2]!)).toBeDefined();
    await tier.close();
  });

  it("a crashed writer's temporary and a killed purger's trash are reported, and purged once past the grace period", async () => {
    const live = await lmcacheEntry('m@1@0@6234567890@bfloat16');
    const crashed = `${live}.tmp0badc0de`;
    await writeFile(crashed, Buffer.alloc(5000, 3));
    const trash = `${live}.tierkit-purge-0123abcd`;
    await writeFile(trash, Buffer.alloc(700, 4));
    const writing = `${await lmcacheEntry('m@1@0@7234567890@bfloat16')}.tmp1234abcd`;
    await writeFile(writing, Buffer.alloc(300, 5));
    const { utimes } = await import('node:fs/promises');
    const old = new Date(Date.now() - 10 * 60_000);
    await utimes(crashed, old, old);
    await utimes(trash, old, old);
    const dir = LmcacheGdsDirectory.fromLmcacheConfig(parseLmcacheConfig(`gds_path: "${root}"`));
    // The one being written (fresh) is neither reported nor touched.
    expect((await dir.verify()).map((p) => p.path).sort()).toEqual([crashed, trash].sort());
    const dry = await dir.purge({ dryRun: true });
    expect(dry.leftovers).toEqual({ files: 2, bytes: 5700 });
    expect(existsSync(crashed)).toBe(true);
    const report = await dir.purge({});
    expect(report.leftovers).toEqual({ files: 2, bytes: 5700 });
    expect(existsSync(crashed) || existsSync(trash)).toBe(false);
    expect(existsSync(writing)).toBe(true);
    expect(await dir.stat('m@1@0@6234567890@bfloat16')).toBeDefined();
    expect(await dir.verify()).toEqual([]);
  });

  it('leaves an entry LMCache rewrote after the scan, complete, and does not report it', async () => {
    const key = 'm@1@0@3234567890@bfloat16';
    const file = await lmcacheEntry(key);
    const other = await lmcacheEntry('m@1@0@4234567890@bfloat16');
    const fresh = Buffer.concat([
      encodeGdsHeader({ dtype: 'BF16', shape: [2, 1, 4, 8], fmt: 1 }),
      Buffer.alloc(128, 9),
    ]);
    class Racing extends LmcacheGdsDirectory {
      protected async beforeRemove(e: { key: string }): Promise<void> {
        if (e.key !== key) return;
        // LMCache writes the same key again between the scan and the removal: tmp + rename, then .metadata.
        await writeFile(`${file}.tmp1234abcd`, fresh);
        const { rename } = await import('node:fs/promises');
        await rename(`${file}.tmp1234abcd`, file);
        await writeFile(`${file}.metadata.tmp1234abcd`, fresh.subarray(0, 4096));
        await rename(`${file}.metadata.tmp1234abcd`, `${file}.metadata`);
      }
    }
    const dir = new Racing({ paths: [root] });
    const report = await dir.purge({ maxBytes: 0 });
    expect(report.removed.map((r) => r.key)).toEqual(['m@1@0@4234567890@bfloat16']);
    expect(report.skipped).toBe(1);
    expect(existsSync(other)).toBe(false);
    // The rewritten entry is whole: the new data and its .metadata.
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(file).equals(fresh)).toBe(true);
    expect(readFileSync(`${file}.metadata`).equals(fresh.subarray(0, 4096))).toBe(true);
    expect(await dir.verify()).toEqual([]);
    expect(allFiles(root).some((f) => /tierkit-purge/.test(f))).toBe(false);
  });

  it.skipIf(!!pythonMissing)(
    `keeps the directory under budget while a writer adds chunks as LMCache does${pythonMissing ? ` (${pythonMissing})` : ''}`,
    async () => {
      const count = 40;
      const chunk = 4096 + 2 * 2 * 16 * 8 * 2 + 4096; // data file + .metadata
      const maxBytes = 8 * chunk;
      const writer = spawn(
        'python3',
        [referenceScript(), 'writer-loop', '--root', root, '--count', String(count), '--paced'],
        {
          stdio: ['pipe', 'pipe', 'pipe'],
        },
      );
      let stderr = '';
      writer.stderr.on('data', (d) => {
        stderr += d;
      });
      const written: string[] = [];
      // The writer adds its next chunk once a purge has reported after its last one,
      // so at most one chunk lands during each purge run.
      let release = false;
      const allWritten = new Promise<void>((resolve) => {
        createInterface({ input: writer.stdout }).on('line', (line) => {
          written.push(JSON.parse(line).key);
          release = true;
          if (written.length === count) resolve();
        });
      });
      const exited = new Promise<number | null>((resolve) => writer.on('exit', (code) => resolve(code)));
      const dir = new LmcacheGdsDirectory({ paths: [root] });
      const reports: PurgeReport[] = [];
      const purger = startLmcachePurger(dir, {
        maxBytes,
        everyMs: 1,
        onReport: (r) => {
          reports.push(r);
          if (release && written.length < count) {
            release = false;
            writer.stdin.write('\n');
          }
        },
      });
      writer.stdin.write('\n');
      await allWritten;
      writer.stdin.end();
      expect(await exited, stderr).toBe(0); // no temporary file vanished under the writer
      await purger.stop();
      const last = await dir.purge({ maxBytes });
      reports.push(last);
      expect(reports.length).toBeGreaterThan(count / 2);
      for (const r of reports) expect(r.bytesAfter).toBeLessThanOrEqual(maxBytes + chunk);
      expect(last.bytesAfter).toBeLessThanOrEqual(maxBytes);
      // Every chunk written is either complete on disk or reported removed, never both, never neither.
      const removed = new Set(reports.flatMap((r) => r.removed.map((x) => x.key)));
      for (const key of written) {
        const file = gdsDataPath(root, key);
        const onDisk = existsSync(file);
        expect(onDisk === existsSync(`${file}.metadata`), `half entry ${key}`).toBe(true);
        expect(onDisk !== removed.has(key), key).toBe(true);
      }
      expect(allFiles(root).some((f) => /\.tmp|tierkit-purge/.test(f))).toBe(false);
      expect(dir.metrics.evictedEntries).toBe(removed.size);
    },
  );
});
