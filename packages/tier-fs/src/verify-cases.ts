/**
 * The verified-read cases every CRC32C implementation must pass: run by
 * verify.test.ts (the addon's hardware CRC) and verify-js.test.ts (the
 * JavaScript fallback, forced with TIERKIT_CRC32C=js).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp, statSync } from 'node:fs';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { createStack, MemoryTier, TierError } from '@tierkit/tier-core';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { FsTier } from './fs-tier.js';
import { tempDir } from './test-utils.js';
import type { VerifyMode } from './verify.js';

const MiB = 1024 * 1024;
const KEY = 'models/rot.bin';

/**
 * Flips one byte of `path` in place and puts its timestamps back to the
 * nanosecond with `touch -r` (from a reference taken before), as bit rot or an
 * edit that hides itself would leave it: same size, inode and mtime.
 */
export async function rot(path: string, at: number): Promise<void> {
  const before = statSync(path, { bigint: true });
  const ref = `${path}.ref`;
  await fsp.writeFile(ref, '');
  execFileSync('touch', ['-r', path, ref]);
  const fh = await fsp.open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0x5a;
    await fh.write(b, 0, 1, at);
    await fh.sync();
  } finally {
    await fh.close();
  }
  execFileSync('touch', ['-r', ref, path]);
  await fsp.unlink(ref);
  const after = statSync(path, { bigint: true });
  expect([after.size, after.ino, after.mtimeNs]).toEqual([before.size, before.ino, before.mtimeNs]);
}

/** Registers the cases; `implementation` is the CRC32C the tier must be using. */
export function verifyCases(implementation: RegExp): void {
  let dir: string;
  let cleanup: () => Promise<void>;
  const tiers: FsTier[] = [];
  const open = (mode: VerifyMode, root = join(dir, 'cache')) => {
    const t = new FsTier({ root, verify: mode, fsync: false });
    tiers.push(t);
    return t;
  };
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir('verify'));
  });
  afterEach(async () => {
    for (const t of tiers.splice(0)) await t.close();
    await cleanup();
  });

  const data = randomBytes(3 * MiB + 12_345);
  const ROT_AT = 2 * MiB + 100; // in block 2

  for (const mode of ['always', 'first'] as const) {
    it(`'${mode}': a rotted byte with its timestamps put back fails the read with INTEGRITY and drops the entry`, async () => {
      const writer = open('never');
      await writer.write(KEY, data);
      await writer.close();
      await rot(join(dir, 'cache', KEY), ROT_AT);

      const tier = open(mode);
      await tier.ready;
      expect(tier.verify.implementation).toMatch(implementation);
      // A range that does not touch the rotted block is served, checked.
      const head = await tier.read(KEY, { range: { offset: 10, length: MiB } });
      expect(Buffer.from(head!).equals(data.subarray(10, 10 + MiB))).toBe(true);
      expect(tier.verify.blocksChecked).toBe(2);
      const err = await tier.read(KEY).catch((e) => e);
      expect(err).toBeInstanceOf(TierError);
      expect(err.code).toBe('INTEGRITY');
      expect(err.details).toMatchObject({ reason: 'checksum', block: 2, dropped: true });
      expect(tier.verify.mismatches).toBe(1);
      // Dropped: a miss now, file and sidecar gone.
      expect(await tier.stat(KEY)).toBeUndefined();
      await expect(fsp.stat(join(dir, 'cache', KEY))).rejects.toThrow(/ENOENT/);
    });
  }

  it("'never' serves the rotted byte (nothing is checked)", async () => {
    const tier = open('never');
    await tier.write(KEY, data);
    await rot(join(dir, 'cache', KEY), ROT_AT);
    const got = Buffer.from((await tier.read(KEY))!);
    expect(got.equals(data)).toBe(false);
    expect(got[ROT_AT]).toBe(data[ROT_AT]! ^ 0x5a);
    expect(tier.verify.blocksChecked).toBe(0);
  });

  it("'always' serves every range, readInto and stream byte-exact, checking whole blocks each time", async () => {
    const tier = open('always');
    await tier.write(KEY, data, { source: { size: data.length, etag: '"v1"' } });
    const ranges = [
      [0, 1],
      [5, 100],
      [MiB - 3, 7],
      [MiB, MiB],
      [MiB + 1, 2 * MiB],
      [3 * MiB, 12_345],
      [3 * MiB + 12_000, 345],
      [0, data.length],
    ] as const;
    for (const [offset, length] of ranges) {
      const got = await tier.read(KEY, { range: { offset, length } });
      expect(Buffer.from(got!).equals(data.subarray(offset, offset + length)), `${offset}+${length}`).toBe(
        true,
      );
      const into = new Uint8Array(length + 8);
      expect(await tier.readInto(KEY, into.subarray(4), { offset, length })).toBe(length);
      expect(Buffer.from(into.subarray(4, 4 + length)).equals(data.subarray(offset, offset + length))).toBe(
        true,
      );
      const s = await tier.readStream(KEY, { range: { offset, length } });
      expect((await buffer(s!)).equals(data.subarray(offset, offset + length))).toBe(true);
    }
    const before = tier.verify.blocksChecked;
    await tier.read(KEY, { range: { offset: 5, length: 10 } });
    expect(tier.verify.blocksChecked).toBe(before + 1);
  });

  it("'always' on a large read (read and checked in pieces off the event loop): byte-exact, and a rot deep inside is caught", async () => {
    const big = randomBytes(13 * MiB + 777);
    const tier = open('always');
    await tier.write(KEY, big);
    const into = new Uint8Array(big.length);
    expect(await tier.readInto(KEY, into)).toBe(big.length);
    expect(Buffer.from(into).equals(big)).toBe(true);
    // Unaligned at both ends: edge blocks read whole, the 11 blocks between in pieces.
    const part = await tier.read(KEY, { range: { offset: MiB - 1, length: 12 * MiB + 2 } });
    expect(Buffer.from(part!).equals(big.subarray(MiB - 1, 13 * MiB + 1))).toBe(true);
    expect(tier.verify.blocksChecked).toBe(14 + 14);
    await rot(join(dir, 'cache', KEY), 9 * MiB + 5);
    const err = await tier.readInto(KEY, into).catch((e) => e);
    expect(err.code).toBe('INTEGRITY');
    expect(err.details.block).toBe(9);
  });

  it("'first' checks each block once per tier instance: repeat reads check nothing", async () => {
    const tier = open('first');
    await tier.write(KEY, data);
    await tier.read(KEY, { range: { offset: 0, length: 10 } });
    expect(tier.verify.blocksChecked).toBe(1);
    await tier.read(KEY);
    expect(tier.verify.blocksChecked).toBe(1 + 4);
    for (let i = 0; i < 3; i++) await tier.read(KEY);
    expect(tier.verify.blocksChecked).toBe(5);
  });

  it('a stream reaching a rotted block fails with INTEGRITY after serving the good blocks', async () => {
    const tier = open('always');
    await tier.write(KEY, data);
    await rot(join(dir, 'cache', KEY), ROT_AT);
    const s = await tier.readStream(KEY);
    let served = 0;
    const err = await (async () => {
      for await (const chunk of s!) served += (chunk as Uint8Array).byteLength;
    })().catch((e) => e);
    expect(err?.code).toBe('INTEGRITY');
    expect(served).toBe(2 * MiB);
    expect(await tier.stat(KEY)).toBeUndefined();
  });

  it('an entry cached without sums gets them at its first verified read (then catches later rot)', async () => {
    const tier = open('never');
    await tier.write(KEY, data, { source: { size: data.length, etag: '"v1"' } });
    await tier.close();
    // Strip the sums, as an older tierkit left the sidecar.
    const metaDir = join(dir, 'cache', '.tierkit', 'meta');
    const [sub] = await fsp.readdir(metaDir);
    const [name] = await fsp.readdir(join(metaDir, sub!));
    const sidecar = join(metaDir, sub!, name!);
    const body = JSON.parse(await fsp.readFile(sidecar, 'utf8'));
    expect(body.blocks.size).toBe(MiB);
    delete body.blocks;
    await fsp.writeFile(sidecar, JSON.stringify(body));

    const first = open('first');
    expect(Buffer.from((await first.read(KEY))!).equals(data)).toBe(true);
    expect(first.verify.sumsComputed).toBe(1);
    expect(JSON.parse(await fsp.readFile(sidecar, 'utf8')).blocks.size).toBe(MiB);
    await first.close();
    await rot(join(dir, 'cache', KEY), ROT_AT);
    const again = open('always');
    expect((await again.read(KEY).catch((e) => e)).code).toBe('INTEGRITY');
  });

  it('a sealed entry (sha256, as warm and bake record) keeps its sums, and a `cp -a` copy of the cache is checked with them', async () => {
    const tier = open('never');
    await tier.write(KEY, data, { source: { size: data.length, etag: '"v1"' } });
    const c = await tier.computeChecksum(KEY);
    expect(await tier.setChecksum(KEY, c!.checksum, c!.etag)).toBe(true);
    await tier.close();
    const copy = join(dir, 'copy');
    execFileSync('cp', ['-a', join(dir, 'cache'), copy]);
    // The copy: new inodes, same sidecars. Rot in the copy (timestamps put back) is caught.
    await rot(join(copy, KEY), ROT_AT);
    const copied = open('first', copy);
    const head = await copied.read(KEY, { range: { offset: 0, length: 100 } });
    expect(Buffer.from(head!).equals(data.subarray(0, 100))).toBe(true);
    expect(copied.verify).toMatchObject({ blocksChecked: 1, unverifiable: 0, sumsComputed: 0 });
    const err = await copied.read(KEY).catch((e) => e);
    expect(err.code).toBe('INTEGRITY');
    // The original is untouched and checks clean.
    const original = open('always');
    expect(Buffer.from((await original.read(KEY))!).equals(data)).toBe(true);
    expect(original.verify.sumsComputed).toBe(0);
  });

  it('a file whose sidecar does not describe it is served unchecked and counted', async () => {
    await fsp.mkdir(join(dir, 'cache', 'models'), { recursive: true });
    await fsp.writeFile(join(dir, 'cache', KEY), data);
    const tier = open('always');
    expect(Buffer.from((await tier.read(KEY))!).equals(data)).toBe(true);
    expect(tier.verify).toMatchObject({ unverifiable: 1, blocksChecked: 0 });
  });

  for (const mode of ['always', 'first'] as const) {
    it(`'${mode}' through a stack: a rotted cached copy is served from the origin byte-exact and refilled`, async () => {
      const origin = new MemoryTier({ name: 'origin' });
      await origin.write(KEY, data);
      const fill = open('never');
      const stack1 = createStack([fill, origin], { closeTiers: false });
      expect(Buffer.from((await stack1.read(KEY))!).equals(data)).toBe(true);
      await stack1.close();
      await fill.close();
      const path = join(dir, 'cache', KEY);
      expect(Buffer.from(await fsp.readFile(path)).equals(data)).toBe(true);
      await rot(path, ROT_AT);

      const cache = open(mode);
      const warnings: string[] = [];
      const stack = createStack([cache, origin], {
        closeTiers: false,
        onWarning: (w) => warnings.push(`${w.op}:${(w.error as TierError).code}`),
      });
      expect(Buffer.from((await stack.read(KEY))!).equals(data)).toBe(true);
      expect(warnings).toContain('verify:INTEGRITY');
      expect(cache.verify.mismatches).toBe(1);
      // Refilled: the cached file is the origin's bytes again, and its new sums check.
      expect(Buffer.from(await fsp.readFile(path)).equals(data)).toBe(true);
      const check = open('always');
      expect(Buffer.from((await check.read(KEY))!).equals(data)).toBe(true);
      expect(check.verify.blocksChecked).toBe(4);
      await stack.close();
    });
  }
}
