/**
 * Files no cache writes, planted inside the root: a FIFO, a UNIX socket, a
 * device node and symlink loops. Every operation must come back, in bounded
 * time, with a miss or a typed error — never hang on a FIFO's open, never
 * throw an untyped ELOOP.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { isTierError } from '@tierkit/tier-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { tempDir } from './test-utils.js';

let base = '';
let cleanup = async () => {};
let server: Server | undefined;
const root = () => join(base, 'cache');

/** Settles within `ms`, or fails the test naming what hung. */
async function bounded<T>(what: string, p: Promise<T>, ms = 5_000): Promise<{ ok: T } | { err: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not return within ${ms} ms`)), ms);
  });
  try {
    return { ok: await Promise.race([p, hang]) };
  } catch (err) {
    if (err instanceof Error && err.message.includes('did not return')) throw err;
    return { err };
  } finally {
    clearTimeout(timer);
  }
}

beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('planted'));
  mkdirSync(join(root(), 'm'), { recursive: true });
  writeFileSync(join(root(), 'm', 'good.bin'), 'good bytes');
  execFileSync('mkfifo', [join(root(), 'm', 'fifo.bin')]);
  symlinkSync('loop.bin', join(root(), 'm', 'loop.bin'));
  symlinkSync('../m', join(root(), 'm', 'up'));
  mkdirSync(join(root(), 'd'));
  symlinkSync('../d/inner', join(root(), 'd', 'inner'));
  server = createServer();
  await new Promise<void>((r) => server!.listen(join(root(), 'm', 'sock.bin'), r));
  if (process.getuid?.() === 0) {
    // A character device (the null device's numbers), as root only.
    execFileSync('mknod', [join(root(), 'm', 'dev.bin'), 'c', '1', '3']);
  }
});
afterAll(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  await cleanup();
});

describe('planted files', () => {
  const planted = ['m/fifo.bin', 'm/sock.bin', 'm/loop.bin', 'm/up', 'd/inner', 'd/inner/x', 'm/dev.bin'];

  it('every read-side operation on them is a miss, in bounded time', async () => {
    const tier = new FsTier({ root: root() });
    await tier.ready;
    for (const key of planted) {
      for (const [op, run] of [
        ['stat', () => tier.stat(key)],
        ['read', () => tier.read(key)],
        ['readInto', () => tier.readInto(key, new Uint8Array(16))],
        ['readStream', () => tier.readStream(key)],
        ['entryInfo', () => tier.entryInfo(key)],
        ['computeChecksum', () => tier.computeChecksum(key)],
      ] as const) {
        const got = await bounded(`${op}('${key}')`, (run as () => Promise<unknown>)());
        expect('ok' in got ? got.ok : got.err, `${op}('${key}')`).toBeUndefined();
      }
    }
    expect(new TextDecoder().decode(await tier.read('m/good.bin'))).toBe('good bytes');
    await tier.close();
  });

  it('list skips them (and never follows a loop); rescan and purge do not trip', async () => {
    const tier = new FsTier({ root: root(), maxBytes: 1024 * 1024 });
    await tier.ready;
    for (const prefix of ['', 'm/', 'm/up/', 'd/', 'd/inner/']) {
      const keys: string[] = [];
      const got = await bounded(
        `list('${prefix}')`,
        (async () => {
          for await (const m of tier.list(prefix)) keys.push(m.key);
        })(),
      );
      if ('err' in got) throw got.err;
      expect(keys).toEqual(prefix === '' || prefix === 'm/' ? ['m/good.bin'] : []);
    }
    const rescan = await bounded('rescan', tier.rescan());
    expect('err' in rescan ? rescan.err : undefined).toBeUndefined();
    expect(tier.count).toBe(1);
    // Only what the tier knows as an entry is purged; the planted things stay as they are.
    expect(await tier.purgeToBytes(0)).toEqual(['m/good.bin']);
    expect(existsSync(join(root(), 'm', 'fifo.bin'))).toBe(true);
    writeFileSync(join(root(), 'm', 'good.bin'), 'good bytes');
    await tier.close();
  });

  it('writes and deletes at their paths are typed: a write replaces them, a delete removes them', async () => {
    const tier = new FsTier({ root: root() });
    for (const key of ['m/fifo.bin', 'm/loop.bin']) {
      const w = await bounded(`write('${key}')`, tier.write(key, new TextEncoder().encode('mine')));
      if ('err' in w) expect(isTierError(w.err), String(w.err)).toBe(true);
      else expect(new TextDecoder().decode(await tier.read(key))).toBe('mine');
    }
    for (const key of ['d/inner/x', 'm/up/good.bin']) {
      const w = await bounded(`write('${key}')`, tier.write(key, new TextEncoder().encode('mine')));
      expect('err' in w && isTierError(w.err), `write('${key}') through a link`).toBe(true);
      const d = await bounded(`delete('${key}')`, tier.delete(key));
      expect('err' in d ? d.err : undefined).toBeUndefined();
    }
    // Through the link 'm/up' nothing was touched: the real file is intact.
    expect(new TextDecoder().decode(await tier.read('m/good.bin'))).toBe('good bytes');
    await tier.close();
  });

  it('touch refuses keys inside .tierkit, as every other operation does', async () => {
    const tier = new FsTier({ root: root() });
    await tier.ready;
    for (const key of ['.tierkit/uses/snapshot.tsv', '.TierKit. /x']) {
      expect(() => tier.touch(key)).toThrow(expect.objectContaining({ code: 'INVALID_KEY' }));
    }
    await tier.close();
  });
});
