/**
 * The CLI with the origin down: a warm cache and a baked image, made from a
 * real s3rver whose process is then killed, still serve every cached object
 * byte for byte with --stale-if-error (or staleIfError in a config file), and
 * say once that the copies are unvalidated.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createS3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, MiB, tierkit } from './cli-harness.js';

let s3: LocalS3;
let work: string;
let originUrl: string;

const objects: Record<string, Uint8Array> = {
  'llama/config.json': new TextEncoder().encode('{"model_type":"llama"}'),
  'llama/model-00001.safetensors': bytes(2 * MiB + 11, 7),
  'llama/tokenizer.json': bytes(120_000, 8),
};
const keys = Object.keys(objects).sort();
const all = Buffer.concat(keys.map((k) => Buffer.from(objects[k]!)));

/** How many times a run said it serves unvalidated copies. */
const notices = (stderr: string) => stderr.match(/without validating them/g)?.length ?? 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'tierkit-cli-offline-'));
  s3 = await startLocalS3({ buckets: ['models'] });
  const bucket = createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) });
  for (const [k, v] of Object.entries(objects)) await bucket.write(k, v);
  await bucket.close();
  originUrl =
    `s3://models/?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true` +
    '&requestChecksumCalculation=WHEN_REQUIRED&responseChecksumValidation=WHEN_REQUIRED';
}, 60_000);

afterAll(async () => {
  await s3?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('tierkit with the origin killed', () => {
  it('warm and cat serve a warm cache and a baked image, saying once that they are unvalidated', async () => {
    const cache = join(work, 'cache');
    const baked = join(work, 'baked');
    const w = await tierkit([
      'warm',
      '--cache',
      cache,
      '--origin',
      originUrl,
      'llama/',
      '--block-size',
      '1MiB',
    ]);
    expect(w.code, w.stderr).toBe(0);
    const b = await tierkit(['bake', '--origin', originUrl, '--out', baked, 'llama/', '--json']);
    expect(b.code, b.stderr).toBe(0);
    // baked.json records where the image came from: the origin's URL, not a tier's name.
    const record = JSON.parse(await readFile(join(baked, '.tierkit', 'baked.json'), 'utf8'));
    expect(record.origin).toBe(new URL(originUrl).href);

    await s3.close();

    // The same settings from a config file: tiers, staleIfError.
    const config = join(work, 'offline.yaml');
    await writeFile(config, `tiers:\n  - ${cache}\n  - ${JSON.stringify(originUrl)}\nstaleIfError: true\n`);

    // Without staleIfError, a read fails: the origin really is gone.
    const strict = await tierkit(['cat', '--cache', cache, '--origin', originUrl, keys[0]!]);
    expect(strict.code, strict.stderr).toBe(1);
    expect(strict.stderr).toMatch(/ECONNREFUSED/);

    const flags = (dir: string) => ['--cache', dir, '--origin', originUrl, '--stale-if-error'];
    for (const how of [flags(cache), flags(baked), ['-c', config]]) {
      const cat = await tierkit(['cat', ...how, ...keys]);
      expect(cat.code, cat.stderr).toBe(0);
      expect(cat.stdoutBytes.equals(all), `${how.join(' ')}: every byte of every object`).toBe(true);
      expect(notices(cat.stderr), cat.stderr).toBe(1);
    }

    // --validate never: the origin is not asked at all, so there is nothing to say.
    const never = await tierkit([
      'cat',
      '--cache',
      cache,
      '--origin',
      originUrl,
      '--validate',
      'never',
      ...keys,
    ]);
    expect(never.code, never.stderr).toBe(0);
    expect(never.stdoutBytes.equals(all)).toBe(true);
    expect(notices(never.stderr)).toBe(0);
    const badValidate = await tierkit([
      'cat',
      '--cache',
      cache,
      '--origin',
      originUrl,
      '--validate',
      'sometimes',
      keys[0]!,
    ]);
    expect(badValidate.code).toBe(2);
    expect(badValidate.stderr).toMatch(/--validate: expected never, first-open, always or a time to live/);

    // warm keeps what is cached (an init container on a baked image starts while S3 is down).
    const warm = await tierkit(['warm', ...flags(baked), 'llama/']);
    expect(warm.code, warm.stderr).toBe(0);
    expect(notices(warm.stderr), warm.stderr).toBe(1);
    expect(warm.stdout).toMatch(
      /0 fetched, 0 refetched .* 3 kept unvalidated \(origin unreachable\), 0 failed/,
    );
    const json = await tierkit(['warm', '-c', config, 'llama/', 'llama/absent.bin', '--json']);
    expect(json.code).toBe(1);
    const summary = JSON.parse(json.stdout);
    expect(summary).toMatchObject({ unvalidated: 3, fetched: 0, failed: 0, missing: ['llama/absent.bin'] });
    expect(summary.originError.code).toBe('UNAVAILABLE');
    expect(json.stderr).toMatch(/missing +llama\/absent\.bin: not cached, and the origin cannot be reached/);
  }, 120_000);
});
