import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyObject } from '../test-fixtures/content.mjs';
import { FsTier } from './index.js';
import { filesUnder, runFixture, tempDir } from './test-utils.js';

// The children import ../dist: `npm run build` first (turbo's test task depends on build).
describe('several processes share one cache directory', () => {
  let dir = '';
  let cleanup = async () => {};
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir('mp'));
  });
  afterAll(() => cleanup());

  it('4 writers/readers under eviction pressure: every read is whole and correct; disk stays within maxBytes', async () => {
    const root = join(dir, 'cache');
    const maxBytes = 600_000;
    const children = [0, 1, 2, 3].map((id) =>
      runFixture('mp-worker.mjs', [root, String(id), '150', String(maxBytes)]),
    );
    const results = await Promise.all(children.map((c) => c.exited));
    const reports = children.map((c) => JSON.parse(c.lines.at(-1) ?? '{}'));
    for (const [i, r] of results.entries())
      expect(r.code, `${r.stderr} ${JSON.stringify(reports[i])}`).toBe(0);
    for (const rep of reports) {
      expect(rep.bad).toEqual([]);
      expect(rep.capacityErrors).toBe(0);
    }
    expect(reports.reduce((n, r) => n + r.hits, 0)).toBeGreaterThan(50);
    expect(reports.reduce((n, r) => n + r.evictions, 0)).toBeGreaterThan(10);

    // On disk: only complete objects, within the budget, matching the shared byte count.
    let onDisk = 0;
    const keys = (await filesUnder(root)).sort();
    for (const k of keys) {
      const bytes = new Uint8Array(await readFile(join(root, k)));
      expect(verifyObject(bytes, k).ok, k).toBe(true);
      onDisk += bytes.byteLength;
    }
    expect(onDisk).toBeLessThanOrEqual(maxBytes);
    const usage = JSON.parse(await readFile(join(root, '.tierkit', 'usage.json'), 'utf8'));
    expect(usage.bytes).toBe(onDisk);
    expect(await readdir(join(root, '.tierkit', 'tmp'))).toEqual([]);
    expect(await readdir(join(root, '.tierkit', 'locks'))).toEqual([]);

    // A new process's index agrees with the disk.
    const tier = new FsTier({ root, maxBytes });
    await tier.ready;
    expect(tier.usedBytes).toBe(onDisk);
    expect([...tier.policy.entries()].map((e) => e.key).sort()).toEqual(keys);
    await tier.close();
  }, 90_000);

  it('one fill at a time per key across processes', async () => {
    const root = join(dir, 'locks1');
    const markers = join(dir, 'markers1');
    await mkdir(markers, { recursive: true });
    const children = [0, 1, 2, 3].map(() => runFixture('lock-worker.mjs', [root, markers, '6', '15']));
    const results = await Promise.all(children.map((c) => c.exited));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const reports = children.map((c) => JSON.parse(c.lines.at(-1) ?? '{}'));
    expect(reports.reduce((n, r) => n + r.fills, 0)).toBe(24);
    expect(reports.every((r) => r.overlaps === 0)).toBe(true);
    const log = (await readFile(join(markers, 'log'), 'utf8')).trim().split('\n');
    expect(log).toHaveLength(24);
  }, 60_000);

  it('a lock left by a SIGKILLed holder is taken over, one contender at a time, and the takeover is never lost', async () => {
    const root = join(dir, 'locks2');
    const markers = join(dir, 'markers2');
    await mkdir(markers, { recursive: true });
    const holder = runFixture('lock-worker.mjs', [root, markers, '0', '0', 'hold']);
    await holder.waitFor(/^held$/);
    holder.proc.kill('SIGKILL');
    await holder.exited;
    // The lease is 60 s: only "same host, pid dead" lets the contenders in quickly.
    const started = Date.now();
    const children = [0, 1, 2].map(() => runFixture('lock-worker.mjs', [root, markers, '3', '10']));
    const results = await Promise.all(children.map((c) => c.exited));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000);
    const log = (await readFile(join(markers, 'log'), 'utf8')).trim().split('\n');
    expect(log).toHaveLength(9);
    // Never two holders (each section made its O_EXCL marker: 9 lines), and the takeover is never
    // lost: the contender that removed the dead holder's lock reports it when it gets the lock,
    // even if another contender linked first (others that saw the dead lock may report it too:
    // for the capacity count, which is recounted after a takeover, telling twice is harmless).
    const tookOver = log.filter((l) => l.endsWith('took-over')).length;
    expect(tookOver).toBeGreaterThanOrEqual(1);
    expect(tookOver + log.filter((l) => l.endsWith('fill')).length).toBe(9);
  }, 60_000);

  it('a lock whose lease lapsed (holder on another host) is taken over; a live one is not', async () => {
    const { dir: root, cleanup: done } = await tempDir('lease');
    const tier = new FsTier({ root, lockLeaseMs: 1000, lockPollMs: 5 });
    await tier.ready;
    const key = 'm/weights.bin';
    const first = await tier.acquireLock(key);
    expect(await tier.tryLock(key)).toBeUndefined();
    await first.release();
    // Plant another host's lock, last refreshed long ago.
    const { createHash } = await import('node:crypto');
    const lockPath = join(
      root,
      '.tierkit',
      'locks',
      `k-${createHash('sha256').update(key).digest('hex')}.lock`,
    );
    await writeFile(
      lockPath,
      JSON.stringify({ pid: 1, host: `not-${hostname()}`, token: 'x', leaseMs: 1000, since: 0 }),
    );
    const live = await tier.tryLock(key);
    expect(live).toBeUndefined(); // just written: its lease is still running
    const old = new Date(Date.now() - 5000);
    await utimes(lockPath, old, old);
    const taken = await tier.acquireLock(key, { timeoutMs: 5000 });
    expect(taken.tookOver).toBe(true);
    expect(JSON.parse(await readFile(lockPath, 'utf8')).token).toBe(taken.token);
    // The holder refreshes its lease while it holds the lock.
    const before = (await stat(lockPath)).mtimeMs;
    await new Promise((r) => setTimeout(r, 800));
    expect((await stat(lockPath)).mtimeMs).toBeGreaterThan(before);
    await taken.release();
    await expect(readFile(lockPath)).rejects.toMatchObject({ code: 'ENOENT' });
    await tier.close();
    await done();
  });
});
