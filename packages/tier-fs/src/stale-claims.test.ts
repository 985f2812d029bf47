/**
 * Claims (block lock files) of killed processes are removed when a tier opens,
 * including claims nobody would take again because the block size changed;
 * a live process's claims are left alone.
 */
import { link, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { runFixture, tempDir } from './test-utils.js';

describe('stale claims', () => {
  let dir = '';
  let cleanup = async () => {};
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir('claims'));
  });
  afterAll(() => cleanup());

  const locks = async (root: string) => (await readdir(join(root, '.tierkit', 'locks'))).sort();

  it("a SIGKILLed holder's claims go at the next open, even after the block size changed; a live holder's stay", async () => {
    const root = join(dir, 'root');
    const dead = runFixture('claim-holder.mjs', [root, 'x.bin', '5000', '1000', '3']);
    await dead.waitFor(/^claimed$/);
    const live = runFixture('claim-holder.mjs', [root, 'y.bin', '5000', '1000', '2']);
    await live.waitFor(/^claimed$/);
    try {
      expect(await locks(root)).toHaveLength(5);
      dead.proc.kill('SIGKILL');
      await dead.exited;
      // Nothing removes them by itself: the files outlive their killed holder.
      expect(await locks(root)).toHaveLength(5);

      const tier = new FsTier({ root, fsync: false });
      await tier.ready;
      const left = await locks(root);
      expect(left).toHaveLength(2);
      // The partial of x.bin is reopened with another block size: nothing of the old claims is needed.
      const entry = await tier.openPartial('x.bin', { size: 5000, etag: '"v1"' }, { blockSize: 2500 });
      for (let b = 0; b < entry.blockCount; b++) {
        expect(await entry.claim(b)).toBe(true);
        await entry.writeBlock(b, new Uint8Array(2500).fill(b));
        await entry.release(b);
      }
      await entry.publish();
      await entry.close();
      expect(await locks(root)).toEqual(left);
      await tier.close();
    } finally {
      live.proc.kill('SIGKILL');
      await live.exited;
    }
    // Once the live holder is gone too, the next open leaves the folder empty.
    const again = new FsTier({ root, fsync: false });
    await again.ready;
    expect(await locks(root)).toEqual([]);
    await again.close();
  }, 30_000);

  it('a takeover link left by a contender that died mid-takeover goes once it is two leases old', async () => {
    const root = join(dir, 'links');
    const first = new FsTier({ root, fsync: false, lockLeaseMs: 100 });
    await first.ready;
    await first.close();
    const lockDir = join(root, '.tierkit', 'locks');
    await writeFile(join(lockDir, 'k-old.lock'), '{}');
    await link(join(lockDir, 'k-old.lock'), join(lockDir, 'k-old.t0-0123456789abcdef01234567'));
    await new Promise((r) => setTimeout(r, 250));
    const tier = new FsTier({ root, fsync: false, lockLeaseMs: 100 });
    await tier.ready;
    // The lock itself names no owner that can be proved dead: it is left to its lease.
    expect(await locks(root)).toEqual(['k-old.lock']);
    await tier.close();
  });
});
