import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSharedPool, isShared, ReadPool, sharedBytes, sharedPool } from './index.js';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('ReadPool', () => {
  let dir = '';
  let path = '';
  let data: Buffer;
  let fd = -1;
  let pool: ReadPool;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tierkit-pool-'));
    path = join(dir, 'obj');
    data = randomBytes(3 * 1024 * 1024 + 123);
    writeFileSync(path, data);
    fd = openSync(path, 'r+');
    pool = new ReadPool({ threads: 2, chunkSize: 64 * 1024 });
  });
  afterAll(async () => {
    await pool.close();
    closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  });

  it('reads a range byte-exact into shared memory, in pieces on every thread', async () => {
    const target = sharedBytes(2 * 1024 * 1024 + 7);
    expect(isShared(target)).toBe(true);
    const before = pool.stats.completed;
    const n = await pool.readInto(fd, target, 1000);
    expect(n).toBe(target.byteLength);
    expect(Buffer.from(target).equals(data.subarray(1000, 1000 + target.byteLength))).toBe(true);
    expect(pool.stats.completed - before).toBe(Math.ceil(target.byteLength / (64 * 1024)));
  });

  it('a subarray of shared memory is filled at its own offset; a read past the end is short', async () => {
    const whole = sharedBytes(300_000);
    const view = whole.subarray(100, 200_100);
    const n = await pool.readInto(fd, view, data.byteLength - 150_000);
    expect(n).toBe(150_000);
    expect(Buffer.from(view.subarray(0, n)).equals(data.subarray(data.byteLength - 150_000))).toBe(true);
    expect(whole[0]).toBe(0);
  });

  it('refuses memory its threads cannot write into', async () => {
    await expect(pool.readInto(fd, new Uint8Array(10), 0)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('an aborted read rejects with ABORTED', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(pool.readInto(fd, sharedBytes(1 << 20), 0, ac.signal)).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });

  it('CRC-32s of ranges match zlib, -1 where the file ends inside a range', async () => {
    const ranges: [number, number][] = [
      [0, 4096],
      [5000, 70_000],
      [data.byteLength - 10, 10],
      [data.byteLength - 10, 20],
    ];
    const got = await pool.crc32(fd, ranges);
    expect(got.slice(0, 3)).toEqual(ranges.slice(0, 3).map(([p, l]) => crc32(data.subarray(p, p + l))));
    expect(got[3]).toBe(-1);
  });

  it('sha256 of a file matches node:crypto', async () => {
    const { hex, size } = await pool.sha256(fd);
    expect(size).toBe(data.byteLength);
    expect(hex).toBe(createHash('sha256').update(data).digest('hex'));
    expect((await pool.sha256(fd, 10, 100)).hex).toBe(
      createHash('sha256').update(data.subarray(10, 110)).digest('hex'),
    );
  });

  it('writes shared memory at a position and returns its CRC', async () => {
    const src = sharedBytes(5000);
    src.set(randomBytes(5000));
    expect(await pool.write(fd, src, 4096, true)).toBe(crc32(src));
    expect(readFileSync(path).subarray(4096, 9096).equals(Buffer.from(src))).toBe(true);
    data = readFileSync(path);
  });

  it('validates its options', () => {
    expect(() => new ReadPool({ threads: 0 })).toThrow(/threads/);
    expect(() => new ReadPool({ chunkSize: 10 })).toThrow(/chunkSize/);
  });
});

describe('sharedPool', () => {
  it('is one pool per process until closed; a closed pool rejects with CLOSED', async () => {
    const a = sharedPool({ threads: 2 });
    expect(sharedPool()).toBe(a);
    await closeSharedPool();
    await expect(a.sha256(0)).rejects.toMatchObject({ code: 'CLOSED' });
    const b = sharedPool({ threads: 2 });
    expect(b).not.toBe(a);
    await closeSharedPool();
  });

  it('an idle shared pool does not keep a process alive (built package)', () => {
    const script = `
      import { openSync, writeFileSync } from 'node:fs';
      import { sharedPool } from '@tierkit/pool';
      const p = ${JSON.stringify(join(tmpdir(), `tierkit-pool-exit-${process.pid}`))};
      writeFileSync(p, 'hello');
      const { hex } = await sharedPool().sha256(openSync(p, 'r'));
      console.log(hex.slice(0, 8));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: pkg,
      timeout: 20_000,
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(createHash('sha256').update('hello').digest('hex').slice(0, 8));
  });
});
