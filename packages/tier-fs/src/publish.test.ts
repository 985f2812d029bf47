/**
 * Publishing a partial copy leaves nothing behind. Two handles (two processes,
 * here two tiers on one root) that both publish the same complete partial: the
 * second one's rename of its private link onto the already-published file is a
 * no-op (both names are the same inode), so its link must be removed by hand.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { tempDir } from './test-utils.js';

let base = '';
let cleanup = async () => {};
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('publish'));
});
afterAll(() => cleanup());

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1));
}

describe('publishing a partial copy', () => {
  it('two handles publishing one partial leave no link, temp or partial behind', async () => {
    const root = join(base, 'cache');
    const a = new FsTier({ root });
    const b = new FsTier({ root });
    const bytes = Uint8Array.from({ length: 3 * 4096 + 7 }, (_, i) => i % 251);
    const source = { size: bytes.byteLength, etag: '"v1"' };
    const pa = await a.openPartial('m/x.bin', source, { blockSize: 4096 });
    const pb = await b.openPartial('m/x.bin', source, { blockSize: 4096 });
    for (let blk = 0; blk < pa.blockCount; blk++) {
      expect(await pa.claim(blk)).toBe(true);
      await pa.writeBlock(blk, bytes.subarray(blk * 4096, Math.min((blk + 1) * 4096, bytes.byteLength)));
      await pa.release(blk);
    }
    await pb.refresh();
    // Both hold the same complete partial and publish it at once, as two processes would.
    await Promise.all([pa.publish(), pb.publish()]);
    await pa.close();
    await pb.close();
    expect(Buffer.from((await b.read('m/x.bin'))!).equals(Buffer.from(bytes))).toBe(true);
    const meta = join(root, '.tierkit');
    const left = filesUnder(meta).filter((f) => f.startsWith('partial/') || f.startsWith('tmp/'));
    expect(left).toEqual([]);
    await a.close();
    await b.close();
  });
});
