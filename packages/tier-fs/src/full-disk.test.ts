/**
 * A cache on a full disk (a real small filesystem, as root): it opens, and it
 * serves its complete entries, although nothing can be written — neither the
 * use journal's snapshot nor the shared byte count — and leaves no temp file.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { fillDisk, type SmallFs, smallFs } from './test-mounts.js';
import { tempDir } from './test-utils.js';

let base = '';
let cleanup = async () => {};
let disk: SmallFs | string = 'not made';
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('full'));
  disk = smallFs(base, 16);
  if (typeof disk === 'string') console.warn(`full-disk.test: skipping: ${disk}`);
});
afterAll(async () => {
  if (typeof disk !== 'string') disk.unmount();
  await cleanup();
});

const blob = (seed: number, size: number) =>
  Uint8Array.from({ length: size }, (_, i) => (i * 31 + seed) & 0xff);

describe('a full disk', () => {
  it('the tier opens and serves every complete entry; writes fail typed; it recovers when space returns', async (ctx) => {
    if (typeof disk === 'string') return ctx.skip(disk);
    const root = join(disk.dir, 'cache');
    const entries = new Map([...Array(4)].map((_, i) => [`m/part-${i}.bin`, blob(i, 1024 * 1024 + i)]));
    const first = new FsTier({ root, maxBytes: 64 * 1024 * 1024, flushIntervalMs: 0 });
    for (const [k, v] of entries) await first.write(k, v);
    for (const k of entries.keys()) await first.read(k);
    await first.close();
    const filler = join(disk.dir, 'filler');
    expect(fillDisk(filler)).toBeGreaterThan(0);

    for (const options of [{ maxBytes: 64 * 1024 * 1024 }, {}]) {
      const tier = new FsTier({ root, flushIntervalMs: 0, ...options });
      await tier.ready;
      for (const [k, v] of entries) {
        expect(Buffer.from((await tier.read(k))!).equals(Buffer.from(v))).toBe(true);
        expect((await tier.stat(k))?.size).toBe(v.byteLength);
      }
      const err = await tier.write('m/new.bin', blob(9, 256 * 1024)).catch((e: unknown) => e);
      expect(err).toMatchObject({ name: 'TierError', code: 'CAPACITY' });
      await tier.close();
      // Nothing half-written is left: no temp file of the journal, the count or the write.
      expect(readdirSync(join(root, '.tierkit', 'tmp'))).toEqual([]);
    }

    rmSync(filler);
    const after = new FsTier({ root, maxBytes: 64 * 1024 * 1024 });
    await after.write('m/new.bin', blob(9, 256 * 1024));
    expect((await after.read('m/new.bin'))?.byteLength).toBe(256 * 1024);
    expect(after.count).toBe(entries.size + 1);
    await after.close();
  });
});
