// tier-3fs against LMCache's FS-connector layout: the golden directories made by
// the Python reference written from LMCache's source (@tierkit/lmcache/testing),
// and round trips through it, with and without save_chunk_meta, over POSIX and over
// USRBIO (the strict stand-in).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TensorDtype } from '@tierkit/lmcache';
import { goldenDir, goldenManifest, pythonMissing, runReference } from '@tierkit/lmcache/testing';
import { loadHf3fs } from '@tierkit/native';
import { afterAll, describe, expect, it } from 'vitest';
import { Hf3fsTier } from './index.js';
import { buildStandIn, standInMount } from './test-utils.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const manifest = goldenManifest();
const mount = standInMount('tierkit-3fs-golden-');
afterAll(() => rmSync(mount, { recursive: true, force: true }));
const standIn = buildStandIn();

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) =>
    statSync(join(dir, f)).isFile(),
  );
}
function du(dir: string): number {
  return Number(spawnSync('du', ['-sk', dir], { encoding: 'utf8' }).stdout.split(/\s/)[0]);
}

describe('the golden LMCache FS-connector directories', () => {
  for (const [set, saveChunkMeta] of [
    ['fs_meta', true],
    ['fs_nometa', false],
  ] as const) {
    it(`${set}: lists, reads (dtype, shape, bytes) and removes 100% of the entries`, async () => {
      const root = join(mount, set);
      cpSync(join(goldenDir(), set), root, { recursive: true });
      const tier = new Hf3fsTier({
        mountPoint: mount,
        basePath: `${set}/a,${set}/b`,
        naming: 'lmcache',
        saveChunkMeta,
        useUsrbio: 'off',
      });
      const listed: string[] = [];
      for await (const m of tier.list()) listed.push(m.key);
      expect(listed).toEqual(manifest[set].map((e) => e.key).sort());
      for (const e of manifest[set]) {
        expect((await tier.stat(e.key))?.size).toBe(e.nbytes);
        expect(sha((await tier.read(e.key))!)).toBe(e.sha256);
        if (saveChunkMeta)
          expect(await tier.describe(e.key)).toEqual({
            length: e.nbytes,
            fmt: e.fmt,
            dtype: e.dtype,
            shape: e.shape,
          });
      }
      const before = du(root);
      for (const k of listed) await tier.delete(k);
      expect(filesUnder(root)).toEqual([]);
      expect(du(root)).toBeLessThan(before);
      await tier.close();
    });
  }
});

describe.skipIf(!!pythonMissing)(
  `round trips through the Python reference${pythonMissing ? ` (${pythonMissing})` : ''}`,
  () => {
    const chunks: [string, TensorDtype, [number, number, number, number], number][] = [
      ['meta-llama/Llama-3.1-8B@1@0@1f2e3d4c5b6a7988@bfloat16', 'BF16', [2, 4, 32, 16], 1],
      ['meta-llama/Llama-3.1-8B@1@0@-1f2e3d4c5b6a7989@half', 'F16', [2, 4, 32, 16], 1],
      ['Qwen/Qwen2.5-7B@2@1@2f2e3d4c5b6a7988@fp8_e4m3fn', 'F8E4M3FN', [2, 4, 32, 16], 1],
      ['mistralai/Mistral-7B@1@0@3f2e3d4c5b6a7987@float', 'F32', [2, 4, 32, 8], 1],
    ];
    const el = (d: TensorDtype) => (d === 'F32' ? 4 : d.startsWith('F8') ? 1 : 2);
    const bytesOf = (i: number, n: number) => new Uint8Array(n).map((_, j) => (j * 13 + i * 5) & 0xff);
    const engines = [['posix', 'off']] as [string, 'off' | 'on'][];
    if (standIn.path) engines.push(['usrbio (stand-in)', 'on']);

    for (const [engineName, useUsrbio] of engines) {
      for (const saveChunkMeta of [true, false]) {
        it(`${engineName}, save_chunk_meta ${saveChunkMeta}: what tier-3fs writes LMCache reads, and the reverse`, async () => {
          if (useUsrbio === 'on') {
            process.env.HF3FS_STANDIN_MOUNT = mount;
            loadHf3fs(standIn.path);
          }
          const dir = `rt-${engineName.split(' ')[0]}-${saveChunkMeta}`;
          mkdirSync(join(mount, dir), { recursive: true });
          const base = `${join(mount, dir, 'x')},${join(mount, dir, 'y')}`;
          const tier = new Hf3fsTier({
            mountPoint: mount,
            basePath: `${dir}/x,${dir}/y`,
            naming: 'lmcache',
            saveChunkMeta,
            useUsrbio,
            iovSize: 100 * 1024 * 1024,
            iorEntries: 128,
            ioDepth: 3,
            ioThreadNum: 2,
            usrbioPieceSize: 8192,
          });
          expect(tier.mode.engine).toBe(useUsrbio === 'on' ? 'usrbio' : 'posix');
          const noMeta = saveChunkMeta ? [] : ['--no-meta'];
          for (const [i, [key, dtype, shape, fmt]] of chunks.entries()) {
            const n = shape.reduce((a, b) => a * b, el(dtype));
            const data = bytesOf(i, n);
            await tier.writeTensor(key, data, { dtype, shape, fmt });
            expect(runReference(['fs-read', '--base', base, '--key', key, ...noMeta])).toMatchObject({
              nbytes: n,
              sha256: sha(data),
              ...(saveChunkMeta ? { dtype, shape, fmt } : {}),
            });
            // And LMCache's writes come back through tier-3fs.
            const parts = key.split('@');
            parts[3] = `${parts[3]}0`; // another chunk
            const back = parts.join('@');
            const file = join(mount, `data-${i}`);
            writeFileSync(file, bytesOf(i + 10, n));
            runReference([
              'fs-write',
              '--base',
              base,
              '--key',
              back,
              '--dtype',
              dtype,
              '--shape',
              shape.join(','),
              '--fmt',
              String(fmt),
              '--data',
              file,
              ...noMeta,
            ]);
            expect(sha((await tier.read(back))!)).toBe(sha(bytesOf(i + 10, n)));
            if (saveChunkMeta)
              expect(await tier.describe(back)).toMatchObject({ dtype, shape, fmt, length: n });
          }
          const listed: string[] = [];
          for await (const m of tier.list()) listed.push(m.key);
          expect(listed.length).toBe(2 * chunks.length);
          await tier.close();
        });
      }
    }
  },
);
