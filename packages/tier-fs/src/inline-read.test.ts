import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  openSync,
  statfsSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alignedBuffer, cachedRead, capabilities, oDirectFlag, openFile } from '@tierkit/native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { tempDir } from './test-utils.js';

const MiB = 1024 * 1024;
const TMPFS = 0x01021994;

let base = '';
let cleanup = async () => {};
let n = 0;
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('inline'));
});
afterAll(() => cleanup());

/**
 * Rewrites `length` bytes of `path` at `offset` with the same bytes through O_DIRECT,
 * which leaves that range out of the page cache. False where O_DIRECT is refused.
 */
function evict(path: string, bytes: Uint8Array, offset: number, length: number): boolean {
  let fd: number;
  try {
    fd = openFile(path, constants.O_WRONLY | oDirectFlag());
  } catch {
    return false;
  }
  try {
    const block = alignedBuffer(length);
    block.set(bytes.subarray(offset, offset + length));
    expect(writeSync(fd, block, 0, length, offset)).toBe(length);
  } finally {
    closeSync(fd);
  }
  return true;
}

/** Whether this machine's temp filesystem takes RWF_NOWAIT reads (ext4, xfs, btrfs do; some overlays do not). */
const nowaitWorks = (() => {
  const path = join(tmpdir(), `tierkit-nowait-probe-${process.pid}`);
  writeFileSync(path, 'probe');
  const fd = openSync(path, 'r');
  try {
    return (cachedRead()?.(fd, new Uint8Array(5), 0) ?? -1) === 5;
  } catch {
    return false;
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
})();

const whyNot = nowaitWorks ? '' : ' — skipped: the temp filesystem refuses RWF_NOWAIT reads';

const localDisk = (() => {
  const t = statfsSync(tmpdir()).type;
  return t !== TMPFS && oDirectFlag() !== 0 && nowaitWorks;
})();

describe('inline page-cache reads (inlineReadMax)', () => {
  it('are on by default on a local disk where the addon is built; 0 turns them off; bad values are refused', async () => {
    expect(capabilities().readCached).toBe(true);
    const tier = await new FsTier({ root: join(base, `r${++n}`), fsync: false }).open();
    expect(tier.inlineReadMax).toBe(4 * MiB);
    await tier.close();
    const off = await new FsTier({ root: join(base, `r${++n}`), fsync: false, inlineReadMax: 0 }).open();
    expect(off.inlineReadMax).toBe(0);
    const data = randomBytes(64 * 1024);
    await off.write('k', data);
    expect(Buffer.from((await off.read('k'))!).equals(data)).toBe(true);
    expect(off.inlineReadBytes).toBe(0);
    await off.close();
    expect(() => new FsTier({ root: base, inlineReadMax: -1 })).toThrow(/inlineReadMax/);
  });

  it.skipIf(!nowaitWorks)(`serve cached bytes exactly, and only reads up to the limit${whyNot}`, async () => {
    // verify 'never': a first verified read widens a range to whole 1 MiB blocks, and this counts the bytes read.
    const tier = new FsTier({
      root: join(base, `r${++n}`),
      fsync: false,
      inlineReadMax: 2 * MiB,
      verify: 'never',
    });
    const data = randomBytes(3 * MiB);
    await tier.write('m/w', data);
    const into = new Uint8Array(2 * MiB);
    expect(await tier.readInto('m/w', into, { offset: MiB })).toBe(2 * MiB);
    expect(Buffer.from(into).equals(data.subarray(MiB))).toBe(true);
    expect(tier.inlineReadBytes).toBe(2 * MiB);
    const part = await tier.read('m/w', { range: { offset: 12_345, length: 1000 } });
    expect(Buffer.from(part!).equals(data.subarray(12_345, 13_345))).toBe(true);
    expect(tier.inlineReadBytes).toBe(2 * MiB + 1000);
    // Longer than the limit: the thread pool reads it all.
    expect(Buffer.from((await tier.read('m/w'))!).equals(data)).toBe(true);
    expect(tier.inlineReadBytes).toBe(2 * MiB + 1000);
    await tier.close();
  });

  it.skipIf(!localDisk)(
    `bytes the page cache does not hold are read on the thread pool, byte-exact, whole or in part${localDisk ? '' : ' — skipped: needs O_DIRECT and RWF_NOWAIT on the temp filesystem'}`,
    async () => {
      const root = join(base, `r${++n}`);
      const tier = new FsTier({ root, fsync: false });
      const data = randomBytes(2 * MiB);
      await tier.write('c', data);
      expect(evict(join(root, 'c'), data, 0, 2 * MiB)).toBe(true);
      const into = new Uint8Array(2 * MiB);
      expect(await tier.readInto('c', into)).toBe(2 * MiB);
      expect(Buffer.from(into).equals(data)).toBe(true);
      expect(tier.inlineReadBytes).toBe(0); // nothing was cached: all of it came from the pool's read

      // Now cached: served inline.
      into.fill(0);
      expect(await tier.readInto('c', into)).toBe(2 * MiB);
      expect(Buffer.from(into).equals(data)).toBe(true);
      expect(tier.inlineReadBytes).toBe(2 * MiB);

      // The second half evicted: the first half comes inline, the rest from the pool.
      expect(evict(join(root, 'c'), data, MiB, MiB)).toBe(true);
      into.fill(0);
      const before = tier.inlineReadBytes;
      expect(await tier.readInto('c', into)).toBe(2 * MiB);
      expect(Buffer.from(into).equals(data)).toBe(true);
      expect(tier.inlineReadBytes - before).toBeGreaterThanOrEqual(MiB / 2);
      expect(tier.inlineReadBytes - before).toBeLessThan(2 * MiB);
      await tier.close();
    },
  );

  it.skipIf(!nowaitWorks)(
    `let the event loop turn: a loop of awaited hits does not starve timers and I/O${whyNot}`,
    async () => {
      const tier = new FsTier({ root: join(base, `r${++n}`), fsync: false });
      await tier.write('k', randomBytes(MiB));
      const into = new Uint8Array(MiB);
      await tier.readInto('k', into); // the descriptor is cached, the pages are in memory
      await new Promise((r) => setImmediate(r));
      let turned = -1;
      let i = 0;
      setImmediate(() => {
        turned = i;
      });
      for (; i < 64; i++) await tier.readInto('k', into);
      // At most 8 MiB are copied inline per turn of the loop; then a read goes to the pool and the loop turns.
      expect(turned).toBeGreaterThanOrEqual(0);
      expect(turned).toBeLessThanOrEqual(10);
      expect(tier.inlineReadBytes).toBeLessThan(65 * MiB);
      expect(tier.inlineReadBytes).toBeGreaterThanOrEqual(32 * MiB);
      await tier.close();
    },
  );

  it('a file cut short under a trusted descriptor is a CHANGED error, not a short read', async () => {
    const root = join(base, `r${++n}`);
    const tier = new FsTier({ root, fsync: false, descriptorCheck: 'none' });
    const data = randomBytes(MiB);
    await tier.write('kv/x', data);
    expect(await tier.readInto('kv/x', new Uint8Array(MiB))).toBe(MiB);
    truncateSync(join(root, 'kv', 'x'), MiB / 2);
    await expect(tier.readInto('kv/x', new Uint8Array(MiB))).rejects.toMatchObject({ code: 'CHANGED' });
    await tier.close();
  });

  const shm = (() => {
    try {
      accessSync('/dev/shm', constants.W_OK);
      return statfsSync('/dev/shm').type === TMPFS;
    } catch {
      return false;
    }
  })();
  it.skipIf(!shm)(
    'a filesystem that refuses (tmpfs) turns them off at the first read, which is still served',
    async () => {
      const dir = await mkdtemp('/dev/shm/tierkit-inline-');
      try {
        const tier = await new FsTier({ root: dir, fsync: false }).open();
        expect(tier.inlineReadMax).toBe(4 * MiB); // tmpfs is local: tried by default
        const data = randomBytes(100_000);
        await tier.write('k', data);
        expect(Buffer.from((await tier.read('k'))!).equals(data)).toBe(true);
        expect(tier.inlineReadMax).toBe(0);
        expect(tier.inlineReadBytes).toBe(0);
        expect(Buffer.from((await tier.read('k'))!).equals(data)).toBe(true);
        await tier.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});
