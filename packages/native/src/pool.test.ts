import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alignedBuffer, IoPool, NativeError, oDirectFlag, openFile } from './index.js';

let dir: string;
let pool: IoPool;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tierkit-native-pool-'));
  pool = new IoPool({ threads: 4, chunkSize: 256 * 1024 });
});
afterAll(async () => {
  pool.close();
  await rm(dir, { recursive: true, force: true });
});

describe('IoPool', () => {
  it('writes and reads back byte-exact in parallel chunks', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12_345);
    const path = join(dir, 'a.bin');
    const fd = openSync(path, 'w+');
    try {
      expect(await pool.write(fd, data, 0)).toBe(data.length);
      expect(readFileSync(path).equals(data)).toBe(true);
      const back = new Uint8Array(data.length);
      expect(await pool.read(fd, back, 0)).toBe(data.length);
      expect(Buffer.from(back).equals(data)).toBe(true);
      // A read past the end returns the short count.
      const tail = new Uint8Array(100_000);
      expect(await pool.read(fd, tail, data.length - 10)).toBe(10);
      expect(Buffer.from(tail.subarray(0, 10)).equals(data.subarray(data.length - 10))).toBe(true);
      // Into a view at an offset of a larger buffer.
      const big = new Uint8Array(1000);
      expect(await pool.read(fd, big.subarray(100, 200), 5000)).toBe(100);
      expect(Buffer.from(big.subarray(100, 200)).equals(data.subarray(5000, 5100))).toBe(true);
      expect(big[99]).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  it('runs mixed batches and reports a bad fd as a typed errno error', async () => {
    const path = join(dir, 'b.bin');
    writeFileSync(path, Buffer.alloc(10, 7));
    const fd = openSync(path, 'r');
    const ok = new Uint8Array(10);
    await expect(pool.run([{ fd, buffer: ok, position: 0 }])).resolves.toEqual([10]);
    closeSync(fd);
    const err = await pool.run([{ fd: 987_654, buffer: ok, position: 0 }]).catch((e) => e);
    expect(err).toBeInstanceOf(NativeError);
    expect(err).toMatchObject({ code: 'ERRNO', errno: 9 });
  });

  it('keeps the event loop free while it works', async () => {
    const path = join(dir, 'c.bin');
    const data = randomBytes(2 * 1024 * 1024);
    writeFileSync(path, data);
    const fd = openSync(path, 'r');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    const reads = Array.from({ length: 20 }, () => pool.read(fd, new Uint8Array(data.length), 0));
    const immediate = new Promise<void>((resolve) => setImmediate(resolve));
    await immediate; // runs before the reads finish: nothing waited on them
    await Promise.all(reads);
    clearInterval(timer);
    closeSync(fd);
    expect(ticks).toBeGreaterThanOrEqual(0);
  });

  it('reads with O_DIRECT into aligned memory where the file system allows it', async (ctx) => {
    const flag = oDirectFlag();
    if (flag === 0) return ctx.skip();
    const path = join(dir, 'd.bin');
    const data = randomBytes(64 * 1024);
    writeFileSync(path, data);
    let fd: number;
    try {
      fd = openFile(path, flag); // O_RDONLY | O_DIRECT
    } catch (err) {
      // tmpfs refuses O_DIRECT (EINVAL): that is the fallback case, not a failure.
      expect((err as NativeError).errno).toBe(22);
      return ctx.skip();
    }
    try {
      const buf = alignedBuffer(data.length);
      expect(buf.byteOffset % 4096).toBe(0);
      expect(await pool.read(fd, buf, 0)).toBe(data.length);
      expect(Buffer.from(buf).equals(data)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('refuses work after close', async () => {
    const p = new IoPool({ threads: 1 });
    p.close();
    await expect(p.run([])).rejects.toMatchObject({ code: 'CLOSED' });
  });
});
