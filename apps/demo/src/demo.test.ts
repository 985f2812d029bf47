import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseSize } from '@tierkit/tier-fs';
import { afterAll, describe, expect, it } from 'vitest';
import { planModel } from './model.js';

const run = promisify(execFile);
const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));

describe('the demo (main job)', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('loads cold through the cache, then warm; a second run is warm from the start', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tierkit-demo-'));
    const env = {
      ...process.env,
      AWS_ENDPOINT_URL: undefined,
      TIERKIT_DEMO_BUCKET: undefined,
    } as NodeJS.ProcessEnv;
    delete env.AWS_ENDPOINT_URL;
    delete env.TIERKIT_DEMO_BUCKET;
    const first = await run(process.execPath, [main, '--size', '12MiB', '--dir', dir], { env });
    expect(first.stdout).toContain('seeding models/demo-12582912/model.safetensors');
    expect(first.stdout).toContain('first load (cold');
    expect(first.stdout).toMatch(/sha256\s+verified/);
    expect(first.stdout).toMatch(/fetched from origin\s+12\.0 MiB on the first load, 0 B on the second/);

    const second = await run(process.execPath, [main, '--size', '12MiB', '--dir', dir], { env });
    expect(second.stdout).toContain('origin already holds');
    expect(second.stdout).toContain('first load (warm');
    expect(second.stdout).toMatch(/fetched from origin\s+0 B on the first load, 0 B on the second/);
    expect(second.stdout).toMatch(/sha256\s+verified/);

    // The cached model is a plain file any program can read.
    const cached = await readFile(join(dir, 'cache', 'models/demo-12582912/model.safetensors'));
    const headerLength = Number(cached.readBigUInt64LE(0));
    const header = JSON.parse(cached.subarray(8, 8 + headerLength).toString('utf8'));
    expect(header.__metadata__.generator).toBe('tierkit-demo');
    expect(header['model.layers.0.weight'].dtype).toBe('F16');
  }, 120_000);

  // The CLI's renderer (@tierkit/warmer/progress) on a real pty (util-linux script), sized with stty.
  const hasScript = spawnSync('script', ['--version']).status === 0;
  it.skipIf(!hasScript)(
    'draws its progress as the CLI does: a bar on a wide terminal, lines on a 0-column one',
    async () => {
      const own = await mkdtemp(join(tmpdir(), 'tierkit-demo-pty-'));
      const screen = (columns: number) => {
        const cmd = `stty cols ${columns} rows 24 && exec '${process.execPath}' '${main}' --size 4MiB --dir '${own}'`;
        const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8' });
        expect(r.status, r.stdout).toBe(0);
        return r.stdout;
      };
      const wide = screen(100);
      const frames = wide
        .split('\x1b[2K')
        .slice(1)
        .map((f) => f.split(/\r|\n/)[0]!);
      expect(frames.at(-1)).toMatch(/^ {2}load \[█+\] 100% 4\.0 MiB \/ 4\.0 MiB/);
      for (const f of frames) expect(f.length).toBeLessThan(100);
      const narrow = screen(0);
      expect(narrow).not.toContain('\x1b[2K');
      expect(narrow).toMatch(/^ {2}load 100% 4\.0 MiB \/ 4\.0 MiB/m);
      await rm(own, { recursive: true, force: true });
    },
    120_000,
  );

  it('refuses a size it cannot read', async () => {
    const err = await run(process.execPath, [main, '--size', 'huge', '--dir', tmpdir()]).catch((e) => e);
    expect(err.code).toBe(1);
    expect(err.stderr).toContain("--size: 'huge' is not a size");
  });
});

describe('the synthetic model', () => {
  it('is laid out as safetensors: aligned header, contiguous tensors', () => {
    const model = planModel(parseSize('--size', '130MiB'));
    const len = Number(new DataView(model.header.buffer).getBigUint64(0, true));
    expect((8 + len) % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(model.header.subarray(8)));
    const tensors = Object.entries(header).filter(([k]) => k !== '__metadata__') as [string, any][];
    let end = 0;
    for (const [, t] of tensors) {
      expect(t.data_offsets[0]).toBe(end);
      expect(t.data_offsets[1] - t.data_offsets[0]).toBe(
        t.shape.reduce((a: number, b: number) => a * b, 1) * 2,
      );
      end = t.data_offsets[1];
    }
    expect(model.size).toBe(model.header.byteLength + end);
  });
});
