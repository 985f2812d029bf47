/**
 * The sample as a user runs it (dist/main.js; build first): it seeds its own
 * embedded S3 server, loads cold then warm as 2 ranks in 2 processes, and a
 * second run finds the model seeded and the cache warm.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { RankReport } from './rank.js';

const run = promisify(execFile);
const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));

describe('tierkit-model-loader', () => {
  let dir = '';
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  const env = { ...process.env };
  delete env.AWS_ENDPOINT_URL;
  delete env.TIERKIT_MODEL_BUCKET;
  const args = () => [
    '--no-warnings',
    main,
    '--size',
    '3MiB',
    '--shards',
    '2',
    '--dir',
    dir,
    '--block-size',
    '64KiB',
  ];

  it('loads cold then warm as 2 ranks; the origin sends the model once, then nothing', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tierkit-model-loader-'));
    const { stdout } = await run(process.execPath, [...args(), '--json'], { env });
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      modelBytes: number;
      passes: { name: string; reports: RankReport[] }[];
    };
    const [cold, warm] = out.passes;
    for (const r of [...cold!.reports, ...warm!.reports]) {
      expect(r.verified).toBe(true);
      expect(r.mismatches).toEqual([]);
    }
    expect(cold!.reports.map((r) => r.rank)).toEqual([0, 1]);
    expect(cold!.reports.reduce((n, r) => n + r.originBytes, 0)).toBe(out.modelBytes);
    expect(warm!.reports.reduce((n, r) => n + r.originBytes, 0)).toBe(0);
    // Each rank received about half of the split tensors' bytes, not the model.
    for (const r of cold!.reports) expect(r.bytesReceived).toBeLessThan(out.modelBytes * 0.75);

    const again = await run(process.execPath, args(), { env });
    expect(again.stdout).toContain('origin already holds the model');
    expect(again.stdout).toMatch(/first load: 2 rank\(s\)/);
    expect(again.stdout).toMatch(/origin sent 0 B in all/);
    expect(again.stdout).toContain('verified');
  }, 120_000);

  it('refuses bad options with a clear message', async () => {
    const err = await run(process.execPath, [main, '--ranks', 'zero'], { env }).catch((e) => e);
    expect(err.code).toBe(1);
    expect(err.stderr).toContain('--ranks must be a whole number');
  });
});
