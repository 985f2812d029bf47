import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32c, jsCrc32c } from '@tierkit/native';
import { createStack, MemoryTier, type PartialEntry, TierError } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsTier } from './fs-tier.js';
import { sumUnit } from './partial-sums.js';
import { keyHash, META_DIR } from './paths.js';
import type { Sidecar } from './sidecar.js';
import { FIXTURES, tempDir } from './test-utils.js';
import { decodeSums, VERIFY_BLOCK } from './verify.js';
import { rot } from './verify-cases.js';

/**
 * The block sums verified reads check are taken from the bytes as they are written
 * (fills, whole writes), never by reading the published file back. Run by
 * fill-sums.test.ts (the addon's CRC32C) and fill-sums-js.test.ts (the JavaScript
 * fallback); the expected sums always come from the JavaScript version.
 */

const MiB = 1024 * 1024;
const KEY = 'models/sums.bin';

let dir: string;
let cleanup: () => Promise<void>;
const tiers: FsTier[] = [];
const open = (options: Partial<ConstructorParameters<typeof FsTier>[0]> = {}) => {
  const t = new FsTier({ root: join(dir, 'cache'), fsync: false, ...options });
  tiers.push(t);
  return t;
};

/** The sums recorded in `key`'s sidecar, and their granularity. */
async function recorded(key: string, size: number): Promise<{ unit: number; sums: number[] }> {
  const h = keyHash(key);
  const side = JSON.parse(
    await fsp.readFile(join(dir, 'cache', META_DIR, 'meta', h.slice(0, 2), `${h}.json`), 'utf8'),
  ) as Sidecar;
  const sums = decodeSums(side.blocks, size);
  expect(sums, 'the sidecar records block sums').toBeDefined();
  return { unit: side.blocks!.size, sums: [...sums!] };
}

async function expectSums(key: string, bytes: Uint8Array, unit = VERIFY_BLOCK): Promise<void> {
  const got = await recorded(key, bytes.byteLength);
  expect(got.unit).toBe(unit);
  expect(got.sums).toEqual([...jsCrc32c.blocks(bytes, unit)]);
}

/** Fills `key` of `bytes` through [cache, memory origin] block by block; resolves to the partials used. */
async function fillThrough(cache: FsTier, bytes: Uint8Array, blockSize: number): Promise<PartialEntry[]> {
  const entries: PartialEntry[] = [];
  const openPartial = cache.openPartial.bind(cache);
  cache.openPartial = async (...args) => {
    const entry = await openPartial(...args);
    entries.push(entry);
    return entry;
  };
  const origin = new MemoryTier();
  await origin.write(KEY, bytes);
  const stack = createStack([cache, origin], { blockSize });
  const r = await stack.fill(KEY);
  expect(r).toBeDefined();
  expect(Buffer.from((await cache.read(KEY))!).equals(Buffer.from(bytes))).toBe(true);
  return entries;
}

/** Registers the cases; `implementation` is the CRC32C the process must be using. */
export function fillSumsCases(implementation: RegExp): void {
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('fill-sums'));
  });
  afterEach(async () => {
    for (const t of tiers.splice(0)) await t.close();
    await cleanup();
  });

  it('uses the CRC32C implementation under test', () => {
    expect(crc32c().name).toMatch(implementation);
  });

  describe('block sums taken as the bytes are written', () => {
    for (const directFill of [true, false]) {
      it(`a fill (directFill: ${directFill}) records the right sums without reading the file back, and rot is caught`, async () => {
        const bytes = randomBytes(10 * MiB + 12_345);
        const cache = open({ directFill, verify: 'never' });
        const entries = await fillThrough(cache, bytes, 4 * MiB);
        // Where the filesystem takes O_DIRECT (not every tmpfs does), the blocks went that way.
        const direct = entries.reduce(
          (n, e) => n + (e as unknown as { directWrites: number }).directWrites,
          0,
        );
        if (!directFill) expect(direct).toBe(0);
        else if (await takesODirect(join(dir, 'probe'))) expect(direct).toBeGreaterThan(0);
        await expectSums(KEY, bytes);
        expect(cache.verify.publishReadBytes).toBe(0);

        await rot(join(dir, 'cache', KEY), 9 * MiB + 3);
        const checker = open({ verify: 'always' });
        const err = await checker.read(KEY, { range: { offset: 9 * MiB, length: 10 } }).catch((e) => e);
        expect(err).toBeInstanceOf(TierError);
        expect(err.code).toBe('INTEGRITY');
        expect(err.details).toMatchObject({ block: 9 });
      });
    }

    for (const [blockSize, unit] of [
      [1.5 * MiB, 512 * 1024],
      [100_000, 100_000],
      [3 * MiB + 4096, 3 * MiB + 4096],
    ] as const) {
      it(`blocks of ${blockSize} bytes publish sums of ${unit} bytes, checked by 'always'`, async () => {
        expect(sumUnit(blockSize)).toBe(unit);
        const bytes = randomBytes(7 * MiB + 333);
        const cache = open({ verify: 'always' });
        await fillThrough(cache, bytes, blockSize);
        await expectSums(KEY, bytes, unit);
        expect(cache.verify.publishReadBytes).toBe(0);
        expect(cache.verify.mismatches).toBe(0);
        expect(cache.verify.blocksChecked).toBeGreaterThan(0);
      });
    }

    it('whole writes of bytes and of streams in odd chunk sizes', async () => {
      const bytes = randomBytes(5 * MiB + 17);
      const cache = open();
      await cache.write(KEY, bytes);
      await expectSums(KEY, bytes);
      const cuts = [1, 7, MiB - 8, MiB + 3, 5, 2 * MiB, 12_345];
      const chunks: Uint8Array[] = [];
      let at = 0;
      for (const n of cuts) {
        chunks.push(bytes.subarray(at, at + n));
        at += n;
      }
      chunks.push(bytes.subarray(at));
      await cache.write('models/streamed.bin', Readable.from(chunks));
      await expectSums('models/streamed.bin', bytes);
      await cache.write('models/empty.bin', Readable.from([]));
      expect((await recorded('models/empty.bin', 0)).sums).toEqual([]);
      expect(cache.verify.publishReadBytes).toBe(0);
    });

    it('a partial another instance marked is published with the sums its writer recorded', async () => {
      const bytes = patternBytes(6 * MiB + 99, 5);
      const bs = 2 * MiB;
      const source = { size: bytes.byteLength, etag: '"v1"' };
      // Separate instances know nothing of each other's blocks: like separate processes.
      const a = open({ name: 'a' });
      const b = open({ name: 'b' });
      const writer = await a.openPartial(KEY, source, { blockSize: bs });
      const publisher = await b.openPartial(KEY, source, { blockSize: bs });
      await writeBlocks(writer, bytes, bs, [0, 2]);
      await publisher.refresh?.();
      await writeBlocks(publisher, bytes, bs, [1, 3]);
      await publisher.publish();
      await writer.close();
      await publisher.close();
      await expectSums(KEY, bytes);
      expect(b.verify.publishReadBytes).toBe(0);
    });
  });

  describe('a partial reopened by a new process', () => {
    const SIZE = 9 * MiB + 4321;
    const BS = 2 * MiB;
    const SEED = 21;
    const source = { size: SIZE, etag: '"v1"' };
    const bytes = patternBytes(SIZE, SEED);

    /** Another process writes blocks 0–2 and exits; this one reopens the partial. */
    async function reopened(): Promise<{ tier: FsTier; partial: PartialEntry; sums: string }> {
      const child = spawnSync(
        process.execPath,
        [
          join(FIXTURES, 'sums-writer.mjs'),
          join(dir, 'cache'),
          KEY,
          `${SIZE}`,
          `${BS}`,
          `${SEED}`,
          '0',
          '1',
          '2',
        ],
        { encoding: 'utf8' },
      );
      expect(child.stderr).toBe('');
      expect(child.stdout.trim()).toBe('wrote 3');
      const [hash] = await fsp.readdir(join(dir, 'cache', META_DIR, 'partial'));
      const part = join(dir, 'cache', META_DIR, 'partial', hash!);
      const sums = join(part, (await fsp.readdir(part)).find((n) => n.startsWith('sums.'))!);
      const tier = open({ name: 'reopener' });
      return { tier, partial: await tier.openPartial(KEY, source, { blockSize: BS }), sums };
    }

    it('publishes with the sums the first process recorded, reading nothing back', async () => {
      const { tier, partial } = await reopened();
      for (const b of [0, 1, 2]) expect(partial.has(b)).toBe(true);
      await writeBlocks(partial, bytes, BS, [3, 4]);
      await partial.publish();
      await partial.close();
      await expectSums(KEY, bytes);
      expect(tier.verify.publishReadBytes).toBe(0);
    });

    it('blocks whose records are lost (torn, or a partial of an older tierkit) are read once, and only they', async () => {
      const { tier, partial, sums } = await reopened();
      // A torn record of block 1: its seal no longer matches its marker.
      const fh = await fsp.open(sums, 'r+');
      await fh.write(Buffer.from([0xff, 0xfe]), 0, 2, (BS / MiB + 1) * 4 + 1);
      await fh.close();
      await writeBlocks(partial, bytes, BS, [3, 4]);
      await partial.publish();
      await partial.close();
      await expectSums(KEY, bytes);
      expect(tier.verify.publishReadBytes).toBe(BS);
    });

    it('a partial without a sums file (older tierkit) publishes with sums read from its blocks', async () => {
      const { tier, partial, sums } = await reopened();
      await partial.close();
      await fsp.unlink(sums);
      const again = await tier.openPartial(KEY, source, { blockSize: BS });
      await writeBlocks(again, bytes, BS, [3, 4]);
      await again.publish();
      await again.close();
      await expectSums(KEY, bytes);
      // The first process's three blocks; the two written here were summed as they were written.
      expect(tier.verify.publishReadBytes).toBe(3 * BS);
    });
  });
}

async function takesODirect(path: string): Promise<boolean> {
  const fh = await fsp
    .open(path, constants.O_CREAT | constants.O_RDWR | constants.O_DIRECT)
    .catch(() => undefined);
  await fh?.close();
  await fsp.rm(path, { force: true });
  return fh !== undefined;
}

async function writeBlocks(p: PartialEntry, bytes: Uint8Array, bs: number, blocks: number[]): Promise<void> {
  for (const blk of blocks) {
    const view = bytes.subarray(blk * bs, Math.min(bytes.byteLength, (blk + 1) * bs));
    const buf = p.blockBuffer?.(view.byteLength) ?? new Uint8Array(view.byteLength);
    buf.set(view);
    expect(await p.claim(blk)).toBe(true);
    await p.writeBlock(blk, buf);
    await p.release(blk);
  }
}
