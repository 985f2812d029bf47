// The USRBIO engine against the strict 3FS stand-in (built from @tierkit/native's
// test fixtures; not real 3FS): every io_depth kind and piece count, failures in
// the middle of a batch, and the rings' state afterwards.
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadHf3fs } from '@tierkit/native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maxIosInFlight, planIos, UsrbioEngine } from './index.js';
import { buildStandIn, standInMount } from './test-utils.js';

describe('io planning', () => {
  it('never plans an empty io, and fills io_depth batches', () => {
    for (const depth of [-3, 0, 1, 3, 4]) {
      for (let span = 1; span <= 40; span++) {
        const plan = planIos(span, 8, depth);
        expect(plan.every((p) => p.len > 0 && p.len <= 8)).toBe(true);
        if (depth > 0) expect(plan.length % depth).toBe(0);
        // The real pieces cover the span exactly, in order.
        const real = plan.filter((p) => !p.repeat);
        expect(real.reduce((n, p) => n + p.len, 0)).toBe(span);
        for (const [i, p] of real.entries())
          expect(p.at).toBe(i === 0 ? 0 : real[i - 1].at + real[i - 1].len);
      }
    }
    expect(planIos(2, 8, 3)).toEqual([
      { at: 0, len: 1, repeat: false },
      { at: 1, len: 1, repeat: false },
      { at: 0, len: 1, repeat: true },
    ]);
    expect(maxIosInFlight(128, 3)).toBe(126);
    expect(maxIosInFlight(128, 0)).toBe(127);
  });
});

const standIn = buildStandIn();
describe.skipIf(!standIn.path)(
  `USRBIO engine against the strict 3FS stand-in${standIn.reason ? ` (${standIn.reason})` : ''}`,
  () => {
    let mount: string;
    let trace: string;
    beforeAll(() => {
      mount = standInMount('tierkit-3fs-engine-');
      trace = `${mount}.trace`;
      process.env.HF3FS_STANDIN_MOUNT = mount;
      process.env.HF3FS_STANDIN_TRACE = trace;
      writeFileSync(trace, '');
      expect(loadHf3fs(standIn.path).available).toBe(true);
    });
    afterAll(() => {
      rmSync(mount, { recursive: true, force: true });
      rmSync(trace, { force: true });
    });
    const lines = () => readFileSync(trace, 'utf8').split('\n').filter(Boolean);
    const piece = 4096;
    const engine = (ioDepth: number) =>
      new UsrbioEngine({
        mountPoint: mount,
        iovSize: 1 << 20,
        iorEntries: 16,
        ioDepth,
        numaId: -1,
        ioThreadNum: 2,
        // io_depth < 0 serves a short batch once this timeout has passed
        timeoutMs: ioDepth < 0 ? 5 : 0,
        pieceSize: piece,
        ioTimeoutMs: 5000,
      });

    for (const depth of [-3, 0, 1, 3]) {
      it(`io_depth ${depth}: writes and reads 1 to 7 pieces byte-exact`, async () => {
        const e = engine(depth);
        const path = join(mount, `depth${depth}.bin`);
        for (let pieces = 1; pieces <= 7; pieces++) {
          writeFileSync(trace, '');
          const data = randomBytes(pieces * piece - 7);
          const fd = openSync(path, 'w+');
          try {
            expect(await e.write(fd, data, 0)).toBe(data.byteLength);
            const back = new Uint8Array(data.byteLength);
            expect(await e.read(fd, back, 0)).toBe(data.byteLength);
            expect(Buffer.from(back).equals(data)).toBe(true);
            // A read past the end stops at the end.
            const tail = new Uint8Array(2 * piece);
            expect(await e.read(fd, tail, data.byteLength - 100)).toBe(100);
          } finally {
            closeSync(fd);
          }
          expect(readFileSync(path).equals(data)).toBe(true);
          const preps = lines().filter((l) => l.startsWith('prep_io'));
          // The stand-in's trace must show the ios, or the checks below would hold vacuously.
          expect(preps.length).toBeGreaterThanOrEqual(pieces);
          expect(preps.every((l) => Number(l.split(' ')[4]) > 0)).toBe(true);
          const batches = lines()
            .filter((l) => l.startsWith('batch '))
            .map((l) => Number(l.split(' ')[1]));
          if (depth > 0) expect(batches.every((b) => b === depth)).toBe(true);
          if (depth < 0) expect(batches.every((b) => b <= -depth)).toBe(true);
          expect(batches.reduce((a, b) => a + b, 0)).toBe(preps.length);
        }
        e.close();
        const destroys = lines().filter((l) => l.startsWith('iordestroy'));
        expect(destroys.length).toBeGreaterThan(0);
        expect(destroys.every((l) => l === 'iordestroy pending=0')).toBe(true);
      });
    }

    for (const depth of [-3, 0, 3]) {
      it(`io_depth ${depth}: a prep failing mid-batch leaves no prepared io, and the engine goes on`, async () => {
        const e = engine(depth);
        const path = join(mount, `fail${depth}.bin`);
        const fd = openSync(path, 'w+');
        try {
          // The 3rd io of a 5-piece write fails.
          process.env.HF3FS_STANDIN_FAIL_PREP_AT = `3:${depth}`;
          writeFileSync(trace, '');
          await expect(e.write(fd, randomBytes(5 * piece), 0)).rejects.toMatchObject({ code: 'IO' });
          delete process.env.HF3FS_STANDIN_FAIL_PREP_AT;
          // The two prepared before the failure were run (padded to a batch), reaped, nothing left queued.
          const batches = lines()
            .filter((l) => l.startsWith('batch '))
            .map((l) => Number(l.split(' ')[1]));
          expect(batches.reduce((a, b) => a + b, 0)).toBe(depth > 0 ? 3 : 2);
          expect(e.retiredLanes).toBe(0);
          const data = randomBytes(3 * piece + 11);
          expect(await e.write(fd, data, 0)).toBe(data.byteLength);
          const back = new Uint8Array(data.byteLength);
          await e.read(fd, back, 0);
          expect(Buffer.from(back).equals(data)).toBe(true);
        } finally {
          closeSync(fd);
        }
        writeFileSync(trace, '');
        e.close();
        expect(lines().filter((l) => l.startsWith('iordestroy'))).toEqual([
          'iordestroy pending=0',
          'iordestroy pending=0',
        ]);
      });
    }

    it('a ring that times out is given up with its iov, and a fresh one serves the next transfer', async () => {
      // io_depth -3 with a long ring timeout: one io waits for a batch longer than the engine waits.
      const e = new UsrbioEngine({
        mountPoint: mount,
        iovSize: 1 << 20,
        iorEntries: 16,
        ioDepth: -3,
        numaId: -1,
        ioThreadNum: 2,
        timeoutMs: 60_000,
        pieceSize: piece,
        ioTimeoutMs: 20,
      });
      const path = join(mount, 'stuck.bin');
      writeFileSync(path, randomBytes(piece));
      const fd = openSync(path, 'r+');
      try {
        writeFileSync(trace, '');
        await expect(e.read(fd, new Uint8Array(10), 0)).rejects.toMatchObject({
          code: 'IO',
          retryable: true,
        });
        expect(e.retiredLanes).toBe(1);
        expect(lines().filter((l) => l.startsWith('iordestroy'))).toHaveLength(2);
        expect(lines().filter((l) => l.startsWith('iovdestroy'))).toHaveLength(1);
      } finally {
        closeSync(fd);
        e.close();
      }
      const fresh = engine(0);
      const fd2 = openSync(path, 'r');
      try {
        const got = new Uint8Array(piece);
        expect(await fresh.read(fd2, got, 0)).toBe(piece);
        expect(Buffer.from(got).equals(readFileSync(path))).toBe(true);
      } finally {
        closeSync(fd2);
        fresh.close();
      }
    });

    it('refuses io_depth that can never be served, and an fd not on the mount', async () => {
      expect(
        () =>
          new UsrbioEngine({
            mountPoint: mount,
            iovSize: 1 << 20,
            iorEntries: 4,
            ioDepth: 4,
            numaId: -1,
            ioThreadNum: 2,
            timeoutMs: 0,
          }),
      ).toThrow(/no room/);
      const e = engine(0);
      const outside = `${mount}-outside.bin`;
      writeFileSync(outside, 'x');
      const fd = openSync(outside, 'r');
      try {
        await expect(e.read(fd, new Uint8Array(1), 0)).rejects.toMatchObject({
          code: 'IO',
          details: { errno: 9 },
        });
      } finally {
        closeSync(fd);
        rmSync(outside);
        e.close();
      }
    });
  },
);
