// The USRBIO binding driven end to end against the test-built STAND-IN for
// libhf3fs_api_shared.so (test-fixtures/hf3fs-standin.c) — not real 3FS.
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capabilities, Hf3fsIor, Hf3fsIov, loadHf3fs, NativeError, requireAddon, usrbio } from './index.js';
import { buildHf3fsStandIn, makeStandInMount } from './test-utils.js';

const standIn = buildHf3fsStandIn();
const mount = makeStandInMount(mkdtempSync(join(tmpdir(), 'tierkit-3fs-mount-')));
const trace = join(mount, '..', `${mount.split('/').pop()}.trace`);

beforeAll(() => {
  process.env.HF3FS_STANDIN_MOUNT = mount;
  process.env.HF3FS_STANDIN_TRACE = trace;
});
afterAll(() => {
  rmSync(mount, { recursive: true, force: true });
  rmSync(trace, { force: true });
});

describe.skipIf(!standIn.path)(
  `USRBIO against the 3FS stand-in${standIn.reason ? ` (${standIn.reason})` : ''}`,
  () => {
    it('loads the stand-in and reports it in capabilities', () => {
      expect(loadHf3fs(standIn.path)).toMatchObject({ available: true, path: standIn.path });
      expect(capabilities().hf3fs.available).toBe(true);
      expect(usrbio.extractMountPoint(join(mount, 'x/y'))).toBe(mount);
      expect(usrbio.extractMountPoint('/definitely/not/3fs')).toBeNull();
    });

    it('writes and reads through rings, in the documented call sequence', async () => {
      writeFileSync(trace, '');
      const data = randomBytes(3 * 65536 + 100);
      const path = join(mount, 'chunk.bin');
      const iov = new Hf3fsIov(mount, 1 << 20);
      const wring = new Hf3fsIor(mount, { entries: 8, forRead: false, ioDepth: 0 });
      const rring = new Hf3fsIor(mount, { entries: 8, forRead: true, ioDepth: 0 });
      const fd = openSync(path, 'w+');
      try {
        usrbio.registerFd(fd);
        iov.bytes(0, data.length).set(data);
        // Four writes of 64 KiB pieces, each from its place in the iov.
        const pieces = [0, 65536, 131072, 196608].map(
          (off) => [off, Math.min(65536, data.length - off)] as const,
        );
        const idx = pieces.map(([off, len], i) => wring.prep(iov, fd, off, len, off, i + 1));
        expect(new Set(idx).size).toBe(4);
        wring.submit();
        const done = await wring.wait(8, 4, 1000);
        expect(done.map((c) => c.userdata).sort()).toEqual([1, 2, 3, 4]);
        expect(done.every((c) => c.result === pieces[c.userdata - 1][1])).toBe(true);
        expect(readFileSync(path).equals(data)).toBe(true);

        iov.bytes().fill(0);
        rring.prep(iov, fd, 0, data.length, 0, 9);
        rring.submit();
        const [c] = await rring.wait(1, 1, 1000);
        expect(c).toMatchObject({ result: data.length, userdata: 9 });
        expect(Buffer.from(iov.bytes(0, data.length)).equals(data)).toBe(true);
      } finally {
        usrbio.deregisterFd(fd);
        closeSync(fd);
        wring.destroy();
        rring.destroy();
        iov.destroy();
      }
      const calls = readFileSync(trace, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[0]);
      expect(calls.slice(0, 4)).toEqual(['iovcreate', 'iorcreate4', 'iorcreate4', 'reg_fd']);
      expect(calls.filter((c) => c === 'prep_io')).toHaveLength(5);
      expect(calls.slice(-4)).toEqual(['dereg_fd', 'iordestroy', 'iordestroy', 'iovdestroy']);
      // The iov's buffer is detached once destroyed: no JS view can outlive the memory.
      expect(iov.buffer.byteLength).toBe(0);
    });

    it('maps the error conventions: positive errno from reg_fd, -errno from prep', () => {
      const path = join(mount, 'conv.bin');
      writeFileSync(path, Buffer.alloc(4096, 1));
      const fd = openSync(path, 'r');
      const iov = new Hf3fsIov(mount, 8192);
      const rring = new Hf3fsIor(mount, { entries: 2, forRead: true });
      try {
        // An unregistered fd cannot be prepared.
        expect(() => rring.prep(iov, fd, 0, 10, 0)).toThrow(
          expect.objectContaining({ code: 'ERRNO', errno: 9 }),
        );
        usrbio.registerFd(fd);
        // Registering twice: hf3fs_reg_fd returns EINVAL as a positive number.
        let err: NativeError | undefined;
        try {
          usrbio.registerFd(fd);
        } catch (e) {
          err = e as NativeError;
        }
        expect(err).toBeInstanceOf(NativeError);
        expect(err).toMatchObject({ code: 'ERRNO', errno: 22 });
        expect(err!.message).toMatch(/hf3fs_reg_fd/);
        // A closed descriptor: EBADF, again positive.
        expect(() => usrbio.registerFd(1_000_000)).toThrow(expect.objectContaining({ errno: 9 }));
        // A read ring refuses writes; the ring is full after `entries` preps (EAGAIN).
        const wring = new Hf3fsIor(mount, { entries: 2, forRead: false });
        // (Through the raw binding: the wrapper always preps in its ring's direction.)
        expect(() => requireAddon().hf3fsPrepIo(wring.raw, iov.raw, true, 0, fd, 0, 10)).toThrow(
          /hf3fs_prep_io/,
        );
        wring.destroy();
        rring.prep(iov, fd, 0, 10, 0);
        rring.prep(iov, fd, 10, 10, 10);
        expect(() => rring.prep(iov, fd, 20, 10, 20)).toThrow(expect.objectContaining({ errno: 11 }));
        // Outside the iov: refused by the binding before the library sees it.
        expect(() => rring.prep(iov, fd, 0, 10, 8190)).toThrow(expect.objectContaining({ code: 'INVALID' }));
      } finally {
        usrbio.deregisterFd(fd);
        closeSync(fd);
        rring.destroy();
        iov.destroy();
      }
    });

    it('honours io_depth: >0 takes whole batches, <0 caps each round', async () => {
      const path = join(mount, 'depth.bin');
      writeFileSync(path, randomBytes(64 * 1024));
      const fd = openSync(path, 'r');
      usrbio.registerFd(fd);
      const iov = new Hf3fsIov(mount, 64 * 1024);
      const batch = new Hf3fsIor(mount, { entries: 8, forRead: true, ioDepth: 4 });
      const capped = new Hf3fsIor(mount, { entries: 8, forRead: true, ioDepth: -2 });
      try {
        for (let i = 0; i < 3; i++) batch.prep(iov, fd, i * 1024, 1024, i * 1024);
        batch.submit();
        // Three of a batch of four: the worker does not start, the wait times out empty.
        expect(await batch.wait(8, 1, 30)).toEqual([]);
        batch.prep(iov, fd, 3 * 1024, 1024, 3 * 1024);
        batch.submit();
        expect(await batch.wait(8, 4, 1000)).toHaveLength(4);

        writeFileSync(trace, '');
        for (let i = 0; i < 6; i++) capped.prep(iov, fd, i * 1024, 1024, i * 1024);
        capped.submit();
        let total = 0;
        while (total < 6) total += (await capped.wait(8, 1, 1000)).length;
        // The worker took them in batches of at most two.
        const batches = readFileSync(trace, 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('batch '))
          .map((l) => Number(l.split(' ')[1]));
        expect(batches).toEqual([2, 2, 2]);
        expect(total).toBe(6);
      } finally {
        usrbio.deregisterFd(fd);
        closeSync(fd);
        batch.destroy();
        capped.destroy();
        iov.destroy();
      }
    });
  },
);

describe.skipIf(!standIn.path)('the stand-in refuses what 3FS refuses', () => {
  it('zero-length ios, fds of the wrong mode or off the mount, unpublished iovs, a second waiter', async () => {
    const path = join(mount, 'strict.bin');
    writeFileSync(path, Buffer.alloc(8192, 7));
    const ro = openSync(path, 'r');
    const iov = new Hf3fsIov(mount, 64 * 1024);
    const wring = new Hf3fsIor(mount, { entries: 8, forRead: false });
    const rring = new Hf3fsIor(mount, { entries: 8, forRead: true, ioDepth: 2 });
    try {
      usrbio.registerFd(ro);
      // hf3fs_prep_io: len == 0 is EINVAL.
      expect(() => rring.prep(iov, ro, 0, 0, 0)).toThrow(expect.objectContaining({ errno: 22 }));
      // A read-only fd cannot take writes: EACCES.
      expect(() => wring.prep(iov, ro, 0, 10, 0)).toThrow(expect.objectContaining({ errno: 13 }));
      // An fd on another file system is not a 3FS fd: EBADF, positive, from hf3fs_reg_fd.
      const outside = join(tmpdir(), `tierkit-not-3fs-${process.pid}`);
      writeFileSync(outside, 'x');
      const ofd = openSync(outside, 'r');
      try {
        expect(() => usrbio.registerFd(ofd)).toThrow(expect.objectContaining({ errno: 9 }));
      } finally {
        closeSync(ofd);
        rmSync(outside);
      }
      // One waiter per ring.
      rring.prep(iov, ro, 0, 100, 0, 1);
      rring.submit();
      const first = rring.wait(8, 2, 50);
      await expect(rring.wait(8, 1, 50)).rejects.toMatchObject({ code: 'BUSY' });
      expect(() => rring.destroy()).toThrow(/while a wait runs/);
      expect(await first).toEqual([]); // one io of a batch of two: not served
      rring.prep(iov, ro, 100, 100, 100, 2);
      rring.submit();
      expect((await rring.wait(8, 2, 1000)).map((c) => c.result)).toEqual([100, 100]);
      // Memory that is not a published iov never moves data: the io fails.
      const { readdirSync, unlinkSync } = await import('node:fs');
      for (const l of readdirSync(join(mount, '3fs-virt', 'iovs')))
        unlinkSync(join(mount, '3fs-virt', 'iovs', l));
      rring.prep(iov, ro, 0, 10, 0, 3);
      rring.prep(iov, ro, 10, 10, 10, 4);
      rring.submit();
      expect((await rring.wait(8, 2, 1000)).map((c) => c.result)).toEqual([-2, -2]);
    } finally {
      usrbio.deregisterFd(ro);
      closeSync(ro);
      wring.destroy();
      rring.destroy();
      iov.destroy();
    }
  });
});
