/**
 * Stacks from config files: any ordered `tiers:` list (memory, file, s3, gds,
 * 3fs) with validate / staleIfError / writeMode, the cache/origin shorthand,
 * and bad settings refused with a typed error that names the key.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTierError, MemoryTier } from '@tierkit/tier-core';
import { FsTier } from '@tierkit/tier-fs';
import { createS3Tier, type S3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cacheFromConfig,
  configFromEnv,
  loadConfigFile,
  mergeConfig,
  planTiers,
  stackFromConfig,
  type TierkitConfig,
} from './config.js';

let s3: LocalS3;
let bucket: S3Tier;
let work: string;
let s3Url: string;
const body = new Uint8Array(300_000).map((_, i) => (i * 7) % 251);

beforeAll(async () => {
  // What an operator's environment gives the S3 SDK (the local server's test credentials).
  process.env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';
  work = await mkdtemp(join(tmpdir(), 'tierkit-config-'));
  s3 = await startLocalS3({ buckets: ['models'] });
  bucket = createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) });
  await bucket.write('m/w.bin', body);
  s3Url =
    `s3://models?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true` +
    '&requestChecksumCalculation=WHEN_REQUIRED&responseChecksumValidation=WHEN_REQUIRED';
}, 60_000);

afterAll(async () => {
  await bucket?.close();
  await s3?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

const env = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

/** The typed error `run` fails with. */
async function failure(run: () => unknown): Promise<{ code: string; message: string; setting?: unknown }> {
  try {
    await run();
  } catch (err) {
    if (!isTierError(err)) throw err;
    return { code: err.code, message: err.message, setting: err.details?.setting };
  }
  throw new Error('expected a failure');
}

describe('tiers: in a config file', () => {
  it('builds memory, gds, file, 3fs over an s3 origin, in order, and reads through all of them', async () => {
    const dir = join(work, 'five');
    await mkdir(join(dir, 'mnt3fs'), { recursive: true });
    await writeFile(
      join(dir, 'tierkit.yaml'),
      [
        'tiers:',
        '  - memory://?maxBytes=64MiB',
        `  - url: gds://${join(dir, 'gds')}`,
        '    useCufile: off',
        '  - url: cache',
        '    maxBytes: 1GiB',
        '    fsync: false',
        `  - url: 3fs://${join(dir, 'mnt3fs')}`,
        '    basePath: kv',
        '    useUsrbio: "off"',
        `  - ${JSON.stringify(s3Url)}`,
        'validate: 10m',
        'staleIfError: true',
        'writeMode: around',
      ].join('\n'),
    );
    await mkdir(join(dir, 'gds'), { recursive: true });
    const config = await loadConfigFile(join(dir, 'tierkit.yaml'));
    expect(config).toMatchObject({ validate: { ttlMs: 600_000 }, staleIfError: true, writeMode: 'around' });
    // A relative path in the file is relative to the file.
    expect(planTiers(config).tiers.map((t) => [t.name, t.spec.scheme, t.role])).toEqual([
      ['memory', 'memory', 'cache'],
      ['gds', 'gds', 'cache'],
      ['cache', 'file', 'cache'],
      ['3fs', '3fs', 'cache'],
      ['origin', 's3', 'origin'],
    ]);
    const built = await stackFromConfig(config, { env });
    try {
      expect(built.tiers.map((t) => t.name)).toEqual(['memory', 'gds', 'cache', '3fs', 'origin']);
      expect(built.tiers[0]).toBeInstanceOf(MemoryTier);
      expect(built.cache).toBeInstanceOf(FsTier);
      expect(built.cache?.root).toBe(join(dir, 'cache'));
      expect(Buffer.from((await built.stack.read('m/w.bin'))!).equals(Buffer.from(body))).toBe(true);
      // The directory cache under the memory and gds tiers holds a plain copy.
      expect(Buffer.from(await readFile(join(dir, 'cache', 'm/w.bin'))).equals(Buffer.from(body))).toBe(true);
      expect(await built.tiers[0]!.stat('m/w.bin')).toMatchObject({ size: body.byteLength });
      // writeMode around: a write reaches the origin and no cache keeps it.
      await built.stack.write('m/new.bin', new Uint8Array([1, 2, 3]));
      expect(await bucket.stat('m/new.bin')).toMatchObject({ size: 3 });
      for (const t of built.tiers.slice(0, -1)) expect(await t.stat('m/new.bin')).toBeUndefined();
    } finally {
      await built.stack.close();
    }
  }, 60_000);

  it('keeps cache/origin as shorthand; flags and variables replace the origin and the directory cache', async () => {
    const short = mergeConfig({ cache: join(work, 'c1'), origin: s3Url });
    expect(planTiers(short).tiers.map((t) => `${t.name}:${t.spec.scheme}`)).toEqual([
      'cache:file',
      'origin:s3',
    ]);
    const listed: TierkitConfig = {
      tiers: ['memory://', `file://${join(work, 'c2')}`, { url: join(work, 'share'), name: 'share' }],
    };
    const over = mergeConfig(listed, { cache: join(work, 'c3'), origin: s3Url });
    const plan = planTiers(over);
    expect(plan.tiers.map((t) => `${t.name}:${t.spec.url.protocol}`)).toEqual([
      'memory:memory:',
      'cache:file:',
      'origin:s3:',
    ]);
    expect(plan.tiers[1]!.spec.url.pathname).toBe(join(work, 'c3'));
    const cache = cacheFromConfig(over);
    expect(cache.root).toBe(join(work, 'c3'));
    await cache.close();
    // A directory origin is the last tier and is opened read-only: nothing is written into it.
    await mkdir(join(work, 'share', 'm'), { recursive: true });
    await writeFile(join(work, 'share', 'm', 'a.bin'), 'abc');
    const built = await stackFromConfig(listed);
    try {
      expect(built.origin.capability.write).toBe(false);
      expect(Buffer.from((await built.stack.read('m/a.bin'))!).toString()).toBe('abc');
    } finally {
      await built.stack.close();
    }
    expect((await import('node:fs')).existsSync(join(work, 'share', '.tierkit'))).toBe(false);
  }, 30_000);

  it('reads TIERKIT_TIERS, TIERKIT_VALIDATE, TIERKIT_STALE_IF_ERROR and honours AIOLI_DISABLE_MODEL_CACHE', () => {
    const c = configFromEnv({
      TIERKIT_TIERS: `memory://?maxBytes=1GiB  ${s3Url}`,
      TIERKIT_VALIDATE: 'never',
      TIERKIT_STALE_IF_ERROR: 'true',
      TIERKIT_WRITE_MODE: 'through',
    });
    expect(c).toMatchObject({ validate: 'never', staleIfError: true, writeMode: 'through' });
    expect(c.tiers).toHaveLength(2);
    expect(configFromEnv({ AIOLI_DISABLE_MODEL_CACHE: 'true' }).disableCache).toBe(true);
    expect(configFromEnv({ AIOLI_DISABLE_MODEL_CACHE: 'false' }).disableCache).toBe(false);
    // The tierkit variable wins over the alias.
    expect(
      configFromEnv({ AIOLI_DISABLE_MODEL_CACHE: 'true', TIERKIT_DISABLE_CACHE: '0' }).disableCache,
    ).toBe(false);
    expect(configFromEnv({ TIERKIT_VALIDATE: 'always' }).validate).toEqual({ ttlMs: 0 });
  });

  it('an origin-only stack when the cache is disabled (AIOLI_DISABLE_MODEL_CACHE)', async () => {
    const config = mergeConfig(
      { tiers: ['memory://', `file://${join(work, 'never')}`, s3Url] },
      configFromEnv({ AIOLI_DISABLE_MODEL_CACHE: 'true' }),
    );
    const built = await stackFromConfig(config, { env });
    try {
      expect(built.tiers.map((t) => t.name)).toEqual(['origin']);
      expect(built.cache).toBeUndefined();
      expect((await built.stack.read('m/w.bin'))?.byteLength).toBe(body.byteLength);
    } finally {
      await built.stack.close();
    }
    expect((await import('node:fs')).existsSync(join(work, 'never'))).toBe(false);
  });
});

describe('bad config: a typed error that names the key', () => {
  const file = async (name: string, text: string) => {
    const p = join(work, name);
    await writeFile(p, text);
    return p;
  };

  it('refuses bad entries, options, values and combinations', async () => {
    const cases: [string, RegExp, string][] = [
      ['tiers: []', /tiers: expected a list of tiers/, 'tiers'],
      ['tiers: [ftp://x/y]', /tiers\[0\]: unknown tier type 'ftp'/, 'tiers[0]'],
      ['tiers:\n  - name: a', /tiers\[0\]\.url: missing/, 'tiers[0].url'],
      [
        'tiers:\n  - url: memory://\n    maxBytes: {a: 1}',
        /tiers\[0\]\.maxBytes: expected a number/,
        'tiers[0].maxBytes',
      ],
      ['tiers: [memory://, s3://b]\ncache: /x', /either tiers .* or cache and origin/, 'tiers'],
      ['tiers: [memory://, s3://b]\nvalidate: sometimes', /validate: expected never, first-open/, 'validate'],
      ['tiers: [memory://, s3://b]\nvalidate: 10', /validate: "10" needs a unit/, 'validate'],
      ['tiers: [memory://, s3://b]\nwriteMode: back', /writeMode: expected through or around/, 'writeMode'],
      [
        'tiers: [memory://, s3://b]\nstaleIfError: maybe',
        /staleIfError: expected 1\/0, true\/false/,
        'staleIfError',
      ],
      ['tierz: [memory://]', /unknown setting 'tierz'/, 'tierz'],
    ];
    for (const [i, [text, re, key]] of cases.entries()) {
      const p = await file(`bad-${i}.yaml`, text);
      const f = await failure(() => loadConfigFile(p));
      expect(f.code, text).toBe('INVALID_ARGUMENT');
      expect(f.message, text).toMatch(re);
      expect(String(f.setting), text).toContain(key);
    }
  });

  it('refuses options a tier does not have, naming the entry and the option', async () => {
    const cases: [TierkitConfig, RegExp][] = [
      [
        { tiers: [{ url: join(work, 'c'), maxBytse: '1GiB' }, s3Url] },
        /tiers\[0\]: .*unknown option 'maxBytse'/,
      ],
      [{ tiers: ['memory://', `${s3Url}&regoin=x`] }, /tiers\[1\]: .*unknown URL parameter "regoin"/],
      [
        { tiers: ['memory://?size=1', s3Url] },
        /tiers\[0\] \(size in the URL\): unknown option for a memory tier/,
      ],
      [
        { tiers: [{ url: `gds://${work}`, useCufile: 'maybe' }, s3Url] },
        /tiers\[0\]\.useCufile: expected auto, on or off/,
      ],
      [{ tiers: [`3fs://${work}`, s3Url] }, /tiers\[0\]\.basePath: missing/],
      [
        {
          tiers: [
            { url: 'memory://', name: 'x' },
            { url: 'memory://', name: 'x' },
          ],
        },
        /tiers\[1\]\.name: 'x' names two tiers/,
      ],
      [{ tiers: ['memory://', s3Url], cache: join(work, 'c') }, /tiers lists no directory cache/],
    ];
    for (const [config, re] of cases) {
      const f = await failure(() => stackFromConfig(config, { env }));
      expect(f.code, JSON.stringify(config)).toBe('INVALID_ARGUMENT');
      expect(f.message).toMatch(re);
    }
    // A bad option of a directory cache is refused before anything is created.
    expect((await import('node:fs')).existsSync(join(work, 'c'))).toBe(false);
  });
});
