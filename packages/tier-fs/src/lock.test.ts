import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../test-fixtures/content.mjs';
import { encodeContent, type FsLock, lockContent } from './lease.js';
import { LockFiles } from './lock.js';
import type { Owner } from './owner.js';
import { tempDir } from './test-utils.js';

// Lock files judged by leases alone: each LockFiles here stands for a process on another
// node (its own owner scope), so no holder can be found dead by its pid.

let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups) await c();
  cleanups = [];
});

async function nodes(n: number, leaseMs: number) {
  const { dir, cleanup } = await tempDir('locks');
  cleanups.push(cleanup);
  const locks = join(dir, 'locks');
  const tmp = join(dir, 'tmp');
  await mkdir(locks);
  await mkdir(tmp);
  return {
    locks,
    nodes: Array.from({ length: n }, (_, i) => {
      const owner: Owner = { pid: 1, host: `node-${i}`, scope: `boot-${i}/pid:[${i}]` };
      return new LockFiles({
        dir: locks,
        tmpDir: tmp,
        leaseMs,
        pollMs: 2,
        instance: `i${i}`,
        tier: 't',
        owner,
      });
    }),
  };
}

/** Blocks this thread (as a long GC pause or a stopped process would). */
function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('lock files across nodes (leases only)', () => {
  it('a live holder on another node is never taken over; its lock is taken once it stops beating', async () => {
    const lease = 600;
    const {
      locks,
      nodes: [a, b],
    } = await nodes(2, lease);
    const held = await a!.acquire('k');
    const raw0 = await readFile(join(locks, 'k.lock'), 'utf8');
    // Four leases of tries: the holder beats (its content changes), so it is never judged stale.
    for (let i = 0; i < 40; i++) {
      expect(await b!.tryAcquire('k')).toBeUndefined();
      await sleep(lease / 10);
    }
    expect(held.valid).toBe(true);
    expect(await readFile(join(locks, 'k.lock'), 'utf8')).not.toBe(raw0);
    // The holder's event loop stalls for a whole lease: its lease lapses by its own clock first.
    stall(lease);
    expect(held.valid).toBe(false);
    const taken = await b!.acquire('k', { timeoutMs: 20 * lease });
    expect(taken.tookOver).toBe(true);
    await sleep(lease / 2);
    expect(held.signal.aborted).toBe(true);
    // The old holder's release leaves the new holder's lock alone.
    await held.release();
    expect(JSON.parse(await readFile(join(locks, 'k.lock'), 'utf8')).token).toBe(taken.token);
    expect(taken.valid).toBe(true);
    await taken.release();
    expect(await readdir(locks)).toEqual([]);
  });

  it('many contenders for one dead holder: exactly one takes it over, every round', async () => {
    // Long enough that the winner's renewals get through on a loaded 2-core machine: a stall past
    // three quarters of a lease makes it give the lock up, and a second takeover is then correct.
    const lease = 1500;
    const { locks, nodes: all } = await nodes(5, lease);
    for (let round = 0; round < 3; round++) {
      // What a node that died holding the lock leaves: its file, never beaten again.
      const dead: Owner = { pid: 1, host: 'node-dead', scope: `boot-dead/pid:[${round}]` };
      await writeFile(join(locks, 'k.lock'), encodeContent(lockContent(dead, `dead-${round}`, lease)));
      const got: FsLock[] = [];
      // Every contender keeps trying for two and a half leases (the takeover needs one), winner or
      // not: nobody releases, so a second winner could only come from a second takeover.
      await Promise.all(
        all.map(async (n) => {
          const until = performance.now() + 2.5 * lease;
          while (performance.now() < until) {
            const l = await n.tryAcquire('k');
            if (l) got.push(l);
            await sleep(2 + Math.random() * 8);
          }
        }),
      );
      expect(got).toHaveLength(1);
      expect(got[0]!.tookOver).toBe(true);
      expect(got[0]!.valid).toBe(true);
      expect(JSON.parse(await readFile(join(locks, 'k.lock'), 'utf8')).token).toBe(got[0]!.token);
      await got[0]!.release();
      // No takeover links are left behind.
      expect(await readdir(locks)).toEqual([]);
    }
  });
});
