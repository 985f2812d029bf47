/**
 * Block buffers for O_DIRECT fills are aligned from their address (told by
 * @tierkit/native), not found by probing with synchronous direct writes on the
 * event loop (a cold 5 KB read once spent ~50 ms there).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { capabilities, loadAddon } from '@tierkit/native';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { tempDir } from './test-utils.js';

let base = '';
let cleanup = async () => {};
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('align'));
});
afterAll(() => cleanup());

describe('O_DIRECT block buffers', () => {
  it('are 4 KiB-aligned by address, with no probe writes', async (ctx) => {
    const addon = loadAddon();
    if (!addon) return ctx.skip(`@tierkit/native not loaded: ${capabilities().addon.reason}`);
    const root = join(base, 'cache');
    mkdirSync(root);
    const tier = new FsTier({ root, directFill: true, pool: false });
    await tier.ready;
    const entry = await tier.openPartial('m.bin', { size: 64 * 1024, etag: '"1"' }, { blockSize: 16 * 1024 });
    for (let i = 0; i < 8; i++) {
      const buf = entry.blockBuffer!(16 * 1024);
      expect(buf.byteLength).toBe(16 * 1024);
      expect(addon.addressOf(buf) % 4096n).toBe(0n);
    }
    await entry.close();
    await tier.close();
  });

  it('a fill through them writes with O_DIRECT where the filesystem takes it (strace shows the flag)', async (ctx) => {
    if (!loadAddon()) return ctx.skip('@tierkit/native not loaded');
    if (spawnSync('strace', ['-V']).status !== 0) return ctx.skip('strace is not installed');
    const script = `
      const { FsTier } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
      const tier = new FsTier({ root: process.argv[1], directFill: true, pool: false });
      await tier.ready;
      const e = await tier.openPartial('m.bin', { size: 65536, etag: '"1"' }, { blockSize: 16384 });
      for (let b = 0; b < 4; b++) {
        await e.claim(b);
        const buf = e.blockBuffer(16384); buf.fill(b + 1);
        await e.writeBlock(b, buf);
        await e.release(b);
      }
      await e.close(); await tier.close();`;
    const root = join(base, 'traced');
    mkdirSync(root);
    const r = spawnSync(
      'strace',
      ['-f', '-e', 'trace=openat', process.execPath, '--input-type=module', '-e', script, root],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const opens = r.stderr.split('\n').filter((l) => l.includes('.tierkit/partial'));
    const direct = opens.filter((l) => l.includes('O_DIRECT'));
    // The data file is opened for direct writes; no scratch file is made to probe alignment.
    expect(direct.some((l) => /data\./.test(l))).toBe(true);
    expect(direct.filter((l) => /\.new-/.test(l))).toEqual([]);
  });
});
