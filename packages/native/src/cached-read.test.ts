import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { constants as os, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alignedBuffer, cachedRead, capabilities, NativeError, oDirectFlag, openFile } from './index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tierkit-native-cached-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('cachedRead', () => {
  const read = cachedRead();

  it('is there wherever the addon is built', () => {
    expect(capabilities().readCached).toBe(true);
    expect(read).toBeTypeOf('function');
  });

  it('copies cached bytes exactly, short at the end of the file, 0 past it', () => {
    const data = randomBytes(1024 * 1024 + 777);
    const path = join(dir, 'cached.bin');
    writeFileSync(path, data); // just written: in the page cache
    const fd = openSync(path, 'r');
    try {
      const into = new Uint8Array(data.length);
      expect(read!(fd, into, 0)).toBe(data.length);
      expect(Buffer.from(into).equals(data)).toBe(true);
      const big = new Uint8Array(5000);
      expect(read!(fd, big.subarray(1000, 3000), data.length - 100)).toBe(100);
      expect(Buffer.from(big.subarray(1000, 1100)).equals(data.subarray(data.length - 100))).toBe(true);
      expect(big[999]).toBe(0);
      expect(big[1100]).toBe(0);
      expect(read!(fd, big, data.length)).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  it('returns -1 for pages the cache does not hold, without reading them', () => {
    // An O_DIRECT write leaves the written range out of the page cache.
    const path = join(dir, 'uncached.bin');
    const size = 256 * 1024;
    const block = alignedBuffer(size);
    block.set(randomBytes(size));
    let wfd: number;
    try {
      wfd = openFile(path, constants.O_WRONLY | constants.O_CREAT | oDirectFlag());
    } catch (err) {
      // tmpfs and some overlay set-ups refuse O_DIRECT: this machine cannot show the miss.
      expect((err as NativeError).errno).toBe(os.errno.EINVAL);
      return;
    }
    try {
      expect(writeSync(wfd, block, 0, size, 0)).toBe(size);
    } finally {
      closeSync(wfd);
    }
    const fd = openSync(path, 'r');
    try {
      const into = new Uint8Array(size);
      expect(read!(fd, into, 0)).toBe(-1);
      expect(into.every((b) => b === 0)).toBe(true);
      // A normal read brings the first half in; the cached read then stops where the cache does.
      readSync(fd, new Uint8Array(size / 2), 0, size / 2, 0);
      const n = read!(fd, into, 0);
      expect(n).toBeGreaterThanOrEqual(size / 2);
      expect(Buffer.from(into.subarray(0, n)).equals(Buffer.from(block.subarray(0, n)))).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('reads into views of a SharedArrayBuffer too', () => {
    const data = randomBytes(50_000);
    const path = join(dir, 'shared.bin');
    writeFileSync(path, data);
    const fd = openSync(path, 'r');
    try {
      const shared = new Uint8Array(new SharedArrayBuffer(60_000));
      expect(read!(fd, shared.subarray(100), 0)).toBe(data.length);
      expect(Buffer.from(shared.subarray(100, 100 + data.length)).equals(data)).toBe(true);
      expect(shared[99]).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  it('throws a typed ERRNO error for a bad descriptor', () => {
    let caught: unknown;
    try {
      read!(987_654, new Uint8Array(16), 0);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NativeError);
    expect(caught).toMatchObject({ code: 'ERRNO', errno: os.errno.EBADF });
  });
});
