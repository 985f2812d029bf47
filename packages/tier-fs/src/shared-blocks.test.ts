import { spawnSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createStack, DelegatingTier, isTierError, type ReadIntoOptions } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { FIXTURES, tempDir } from './test-utils.js';

// Blocks one process (one node) writes into a shared partial copy and another serves.

const BS = 64 * 1024;
let cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups) await c();
  cleanups = [];
});

async function tiers(n: number) {
  const { dir, cleanup } = await tempDir('shared');
  cleanups.push(cleanup);
  const root = join(dir, 'cache');
  const out: FsTier[] = [];
  // Separate tier instances know nothing of each other's blocks: like separate processes.
  for (let i = 0; i < n; i++) {
    const t = new FsTier({ root, name: `cache${i}` });
    cleanups.unshift(() => t.close());
    await t.ready;
    out.push(t);
  }
  return { root, tiers: out };
}

describe('blocks shared across processes and nodes', () => {
  it("a block another process marked is served only once its bytes match the marker's CRC", async () => {
    const {
      root,
      tiers: [a, b],
    } = await tiers(2);
    const bytes = patternBytes(4 * BS, 11);
    const source = { size: bytes.byteLength, etag: '"v1"' };
    const reader = await b!.openPartial('m.bin', source, { blockSize: BS });
    const writer = await a!.openPartial('m.bin', source, { blockSize: BS });
    for (const blk of [1, 2]) {
      expect(await writer.claim(blk)).toBe(true);
      await writer.writeBlock(blk, bytes.subarray(blk * BS, (blk + 1) * BS));
      await writer.release(blk);
    }
    // What a reader on another node can find where its cache of the file is out of date
    // (or the disk lost the bytes): block 1's bytes differ from what its marker recorded.
    const [hash] = await readdir(join(root, '.tierkit', 'partial'));
    const part = join(root, '.tierkit', 'partial', hash!);
    const dataName = (await readdir(part)).find((n) => n.startsWith('data.'))!;
    const data = await readFile(join(part, dataName));
    data.fill(0xee, BS, 2 * BS);
    await writeFile(join(part, dataName), data);

    expect(reader.has(1)).toBe(false);
    await reader.refresh();
    expect(reader.has(1)).toBe(true);
    expect(reader.has(2)).toBe(true);
    // Block 2 matches: served (a range inside it, and one across its edge into block 1 is refused).
    const two = new Uint8Array(BS - 100);
    await reader.readInto(two, 2 * BS + 50);
    expect(Buffer.from(two).equals(Buffer.from(bytes.subarray(2 * BS + 50, 3 * BS - 50)))).toBe(true);
    const across = new Uint8Array(200);
    const err = await reader.readInto(across, 2 * BS - 100).catch((e: unknown) => e);
    expect(isTierError(err, 'CHANGED'), String(err)).toBe(true);
    expect((err as { retryable: boolean }).retryable).toBe(true);
    // Block 1 is no longer counted present, also after another refresh (its marker failed here)...
    expect(reader.has(1)).toBe(false);
    await reader.refresh();
    expect(reader.has(1)).toBe(false);
    // ...so a fill claims it and fetches it again, and then it is served.
    expect(await reader.claim(1)).toBe(true);
    await reader.writeBlock(1, bytes.subarray(BS, 2 * BS));
    await reader.release(1);
    await reader.readInto(across, 2 * BS - 100);
    expect(Buffer.from(across).equals(Buffer.from(bytes.subarray(2 * BS - 100, 2 * BS + 100)))).toBe(true);
    await reader.close();
    await writer.close();
  });

  it('a read through a stack refetches a block that fails its check, and returns the right bytes', async () => {
    const { dir, cleanup } = await tempDir('shared-stack');
    cleanups.push(cleanup);
    const bytes = patternBytes(4 * BS + 17, 12);
    const originFs = new FsTier({ root: join(dir, 'origin'), name: 'origin' });
    cleanups.unshift(() => originFs.close());
    await originFs.write('m.bin', bytes);
    const fetched: number[] = [];
    class Counting extends DelegatingTier {
      override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
        fetched.push(options?.offset ?? 0);
        return super.readInto(key, target, options);
      }
    }
    const cacheRoot = join(dir, 'cache');
    const cacheA = new FsTier({ root: cacheRoot, name: 'cache' });
    const cacheB = new FsTier({ root: cacheRoot, name: 'cache' });
    const stack = createStack([cacheB, new Counting(originFs)], { blockSize: BS, closeTiers: false });
    cleanups.unshift(async () => {
      await stack.close();
      await cacheA.close();
      await cacheB.close();
    });
    const meta = (await originFs.stat('m.bin'))!;
    const source = { size: meta.size, etag: meta.etag };
    // B holds the partial open (a read of block 0 in flight keeps it so in practice).
    const held = await cacheB.openPartial('m.bin', source, { blockSize: BS });
    const writer = await cacheA.openPartial('m.bin', source, { blockSize: BS });
    expect(await writer.claim(2)).toBe(true);
    await writer.writeBlock(2, bytes.subarray(2 * BS, 3 * BS));
    await writer.release(2);
    await writer.close();
    const [hash] = await readdir(join(cacheRoot, '.tierkit', 'partial'));
    const part = join(cacheRoot, '.tierkit', 'partial', hash!);
    const dataName = (await readdir(part)).find((n) => n.startsWith('data.'))!;
    const data = await readFile(join(part, dataName));
    data.fill(0, 2 * BS + 10, 2 * BS + 20);
    await writeFile(join(part, dataName), data);
    await held.refresh();
    expect(held.has(2)).toBe(true);
    const got = await stack.read('m.bin', { range: { offset: 2 * BS, length: BS } });
    expect(Buffer.from(got!).equals(Buffer.from(bytes.subarray(2 * BS, 3 * BS)))).toBe(true);
    // Fetched again once, after its check failed; nothing else fetched.
    expect(fetched).toEqual([2 * BS]);
    await held.close();
  });

  const strace = spawnSync('strace', ['-V'], { encoding: 'utf8' });
  const straceRefused = strace.error ? `strace is not installed (${strace.error.message})` : undefined;
  (straceRefused ? it.skip : it).each([true, false])(
    `pool: %s — a block's data is synced before its marker is written (seen by strace)${straceRefused ? ` — skipped: ${straceRefused}` : ''}`,
    async (pool) => {
      const { dir, cleanup } = await tempDir('sync-order');
      cleanups.push(cleanup);
      const originRoot = join(dir, 'origin');
      const originFs = new FsTier({ root: originRoot, name: 'origin' });
      cleanups.unshift(() => originFs.close());
      await originFs.write('m.bin', patternBytes(6 * BS + 5, 13));
      const trace = join(dir, 'trace');
      const r = spawnSync(
        'strace',
        [
          '-f',
          '-y',
          '-qq',
          '-s0',
          '-e',
          'trace=pwrite64,pwritev,pwritev2,fdatasync,fsync',
          '-o',
          trace,
          process.execPath,
          join(FIXTURES, 'node-worker.mjs'),
          'fill',
          JSON.stringify({
            cache: join(dir, 'cache'),
            origin: originRoot,
            key: 'm.bin',
            blockSize: BS,
            pool,
          }),
        ],
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
      const order = syncOrder(await readFile(trace, 'utf8'));
      expect(order.markers).toBe(7);
      expect(order.unsynced, order.unsynced.join('\n')).toEqual([]);
    },
    30_000,
  );
});

/**
 * Checks, in an `strace -f -y` log, that each marker write into a `blocks.<id>`
 * file started after an fdatasync/fsync of the `data.<id>` file that itself
 * started after the write of that block's bytes had completed.
 */
function syncOrder(log: string): { markers: number; unsynced: string[] } {
  interface Call {
    name: string;
    file: string;
    offset: number;
    length: number;
    start: number;
    end: number;
  }
  const calls: Call[] = [];
  const open = new Map<string, Call>();
  for (const [i, line] of log.split('\n').entries()) {
    const pid = /^(\d+)\s/.exec(line)?.[1] ?? '';
    const resumed = /<\.\.\. (\w+) resumed>/.exec(line);
    if (resumed) {
      const c = open.get(pid);
      if (c) {
        c.end = i;
        open.delete(pid);
      }
      continue;
    }
    const m = /(pwrite64|pwritev2?|fdatasync|fsync)\(\d+<([^>]*)>(?:, [^,]*, (\d+), (\d+))?/.exec(line);
    if (!m) continue;
    const c: Call = {
      name: m[1]!,
      file: m[2]!.replace(/^.*\//, ''),
      length: Number(m[3] ?? 0),
      offset: Number(m[4] ?? 0),
      start: i,
      end: i,
    };
    if (line.includes('<unfinished ...>')) open.set(pid, c);
    calls.push(c);
  }
  const unsynced: string[] = [];
  let markers = 0;
  for (const mark of calls) {
    const id = /^blocks\.([0-9a-f]+)$/.exec(mark.file)?.[1];
    if (!id || !mark.name.startsWith('pwrite') || mark.length !== 8) continue;
    markers++;
    const block = mark.offset / 8;
    const writes = calls.filter(
      (c) =>
        c.file === `data.${id}` &&
        c.name.startsWith('pwrite') &&
        c.offset === block * BS &&
        c.start < mark.start,
    );
    const written = writes.at(-1);
    const synced =
      written !== undefined &&
      calls.some(
        (c) =>
          c.file === `data.${id}` &&
          (c.name === 'fdatasync' || c.name === 'fsync') &&
          c.start > written.end &&
          c.end < mark.start,
      );
    if (!synced) unsynced.push(`block ${block}: marker written without a sync of its data before it`);
  }
  return { markers, unsynced };
}
