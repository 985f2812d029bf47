// tier-gds against LMCache's own layout: the golden directories made by the Python
// reference written from LMCache's source (@tierkit/lmcache/testing), and round
// trips through that reference where python3 is installed.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gdsDataPath, type TensorDtype, tensorBytes } from '@tierkit/lmcache';
import { goldenDir, goldenManifest, pythonMissing, runReference } from '@tierkit/lmcache/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { GdsTier } from './index.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const scratch = mkdtempSync(join(tmpdir(), 'tierkit-gds-golden-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const manifest = goldenManifest();

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) =>
    statSync(join(dir, f)).isFile(),
  );
}

/** `du -sk`: kilobytes allocated under `dir`. */
function du(dir: string): number {
  const r = spawnSync('du', ['-sk', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`du failed: ${r.stderr}`);
  return Number(r.stdout.split(/\s/)[0]);
}

describe('the golden LMCache GDS directory', () => {
  it('lists, stats, reads (dtype, shape, bytes), verifies and evicts 100% of its entries', async () => {
    const root = join(scratch, 'copy');
    cpSync(join(goldenDir(), 'gds'), root, { recursive: true });
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off' });
    const listed: string[] = [];
    for await (const m of tier.list()) listed.push(m.key);
    expect(listed).toEqual(manifest.gds.map((e) => e.key).sort());
    for (const e of manifest.gds) {
      expect((await tier.stat(e.key))?.size).toBe(e.nbytes);
      expect(sha((await tier.read(e.key))!)).toBe(e.sha256);
      expect(await tier.describe(e.key)).toMatchObject({ dtype: e.dtype, shape: e.shape, fmt: e.fmt });
    }
    expect(await tier.verify()).toEqual([]);
    const before = du(root);
    expect(filesUnder(root)).toHaveLength(2 * manifest.gds.length);
    const report = await tier.purge({ maxBytes: 0 });
    expect(report.removed.map((r) => r.key).sort()).toEqual(listed);
    expect(report.bytesAfter).toBe(0);
    // The bytes are gone from disk, not just from an index.
    expect(filesUnder(root)).toEqual([]);
    expect(du(root)).toBeLessThan(before);
    for (const e of manifest.gds) expect(await tier.stat(e.key)).toBeUndefined();
    await tier.close();
  });
});

describe.skipIf(!!pythonMissing)(
  `round trips through the Python reference${pythonMissing ? ` (${pythonMissing})` : ''}`,
  () => {
    const chunks: [string, TensorDtype, number[], number][] = [
      ['meta-llama/Llama-3.1-8B@1@0@1f2e3d4c5b6a7988@bfloat16', 'BF16', [2, 4, 32, 16], 1],
      ['meta-llama/Llama-3.1-8B@1@0@-1f2e3d4c5b6a7988@half', 'F16', [2, 4, 32, 16], 1],
      ['Qwen/Qwen2.5-7B@2@1@2f2e3d4c5b6a7988@fp8_e4m3fn', 'F8E4M3FN', [2, 4, 32, 16], 1],
      ['mistralai/Mistral-7B@1@0@3f2e3d4c5b6a7988@float', 'F32', [2, 4, 32, 8], 1],
      ['deepseek-ai/DeepSeek-V3@1@0@4f2e3d4c5b6a7988@bfloat16', 'BF16', [1, 4, 32, 24], 6],
    ];
    const bytesOf = (i: number, n: number) => new Uint8Array(n).map((_, j) => (j * 31 + i * 7) & 0xff);

    it('what tier-gds writes, LMCache reads back with the same dtype, shape and bytes', async () => {
      const root = join(scratch, 'ts-to-py');
      const tier = new GdsTier({ gdsPath: root, useCufile: 'off' });
      for (const [i, [key, dtype, shape, fmt]] of chunks.entries()) {
        const n = shape.reduce((a, b) => a * b, dtype === 'F32' ? 4 : dtype.startsWith('F8') ? 1 : 2);
        const data = bytesOf(i, n);
        await tier.writeTensor(key, data, { dtype, shape, fmt });
        expect(runReference(['gds-read', '--root', root, '--key', key])).toMatchObject({
          path: gdsDataPath(root, key),
          dtype,
          shape,
          fmt,
          nbytes: n,
          sha256: sha(data),
        });
      }
      expect((runReference(['gds-scan', '--root', root]) as string[]).sort()).toEqual(
        chunks.map((c) => c[0]).sort(),
      );
      await tier.close();
    });

    it('what LMCache writes (one path per GPU), tier-gds lists and reads with the same dtype, shape and bytes', async () => {
      const paths = `${join(scratch, 'py', 'nvme0')},${join(scratch, 'py', 'nvme1')}`;
      for (const [i, [key, dtype, shape, fmt]] of chunks.entries()) {
        const n = shape.reduce((a, b) => a * b, dtype === 'F32' ? 4 : dtype.startsWith('F8') ? 1 : 2);
        const file = join(scratch, `data${i}`);
        writeFileSync(file, bytesOf(i, n));
        runReference([
          'gds-write',
          '--root',
          paths,
          '--key',
          key,
          '--dtype',
          dtype,
          '--shape',
          shape.join(','),
          '--fmt',
          String(fmt),
          '--data',
          file,
          '--device',
          String(i % 2),
        ]);
      }
      const tier = new GdsTier({ gdsPath: paths, useCufile: 'off' });
      const listed: string[] = [];
      for await (const m of tier.list()) listed.push(m.key);
      expect(listed).toEqual(chunks.map((c) => c[0]).sort());
      for (const [i, [key, dtype, shape, fmt]] of chunks.entries()) {
        const got = (await tier.read(key))!;
        const want = tensorBytes(dtype as TensorDtype, shape);
        expect(got.byteLength).toBe(want);
        expect(sha(got)).toBe(sha(bytesOf(i, want)));
        expect(await tier.describe(key)).toMatchObject({ dtype, shape, fmt });
      }
      expect(await tier.verify()).toEqual([]);
      await tier.close();
    });
  },
);
