/**
 * Offline serving through stacks built from config: a warm cache and a baked
 * image serve every cached object byte for byte after the S3 server (a real
 * s3rver process) is killed, and say once that the copies are unvalidated.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTierError, type Tier } from '@tierkit/tier-core';
import { createS3Tier, type S3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bake } from './bake.js';
import { originFromConfig, stackFromConfig, type TierkitConfig } from './config.js';
import { OriginOutage, type UnvalidatedNotice } from './offline.js';
import { warm } from './warm.js';

let s3: LocalS3;
let work: string;
let s3Url: string;
const MiB = 1024 * 1024;

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 17 + (i >>> 9)) & 0xff;
  return b;
}

const objects: Record<string, Uint8Array> = {
  'llama/config.json': new TextEncoder().encode('{"model_type":"llama"}'),
  'llama/model-00001.safetensors': pattern(3 * MiB + 5, 1),
  'llama/tokenizer.json': pattern(150_000, 2),
  'shared/empty.txt': new Uint8Array(0),
};

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';
  work = await mkdtemp(join(tmpdir(), 'tierkit-offline-'));
  s3 = await startLocalS3({ buckets: ['models'] });
  const bucket: S3Tier = createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) });
  for (const [k, v] of Object.entries(objects)) await bucket.write(k, v);
  await bucket.close();
  s3Url =
    `s3://models?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true` +
    '&requestChecksumCalculation=WHEN_REQUIRED&responseChecksumValidation=WHEN_REQUIRED';
}, 60_000);

afterAll(async () => {
  await s3?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

const keys = Object.keys(objects);

async function readAll(stack: Tier): Promise<Record<string, Buffer>> {
  const out: Record<string, Buffer> = {};
  for (const key of keys) {
    const b = await stack.read(key);
    if (!b) throw new Error(`${key}: a miss`);
    out[key] = Buffer.from(b);
  }
  return out;
}

describe('with the origin killed', () => {
  it('a warm cache and a baked image serve every cached object, and say so once', async () => {
    const warmDir = join(work, 'warm');
    const bakedDir = join(work, 'baked');
    const online: TierkitConfig = { tiers: [warmDir, s3Url], blockSize: MiB };
    const w = await stackFromConfig(online);
    try {
      const s = await warm(w.stack, { prefixes: ['llama/', 'shared/'] });
      expect(s).toMatchObject({ ok: true, fetched: keys.length });
    } finally {
      await w.stack.close();
    }
    const origin = await originFromConfig(online);
    try {
      expect(await bake(origin, { prefixes: ['llama/', 'shared/'] }, bakedDir)).toMatchObject({ ok: true });
    } finally {
      await origin.close();
    }

    // The S3 server process is killed: nothing answers on its port any more.
    await s3.close();

    for (const dir of [warmDir, bakedDir]) {
      // Without staleIfError the stack will not serve what it cannot validate.
      const strict = await stackFromConfig({ tiers: [dir, s3Url] });
      try {
        const err = await strict.stack.read(keys[0]!).catch((e: unknown) => e);
        expect(isTierError(err, 'UNAVAILABLE'), String(err)).toBe(true);
      } finally {
        await strict.stack.close();
      }

      const notices: UnvalidatedNotice[] = [];
      const built = await stackFromConfig(
        { tiers: [dir, s3Url], staleIfError: true },
        { onUnvalidated: (n) => notices.push(n) },
      );
      try {
        const got = await readAll(built.stack);
        for (const key of keys)
          expect(got[key]!.equals(Buffer.from(objects[key]!)), `${dir} ${key}`).toBe(true);
        // A ranged read and a second pass are served the same way.
        const part = await built.stack.read('llama/model-00001.safetensors', {
          range: { offset: MiB - 3, length: 10 },
        });
        expect(
          Buffer.from(part!).equals(
            Buffer.from(objects['llama/model-00001.safetensors']!.subarray(MiB - 3, MiB + 7)),
          ),
        ).toBe(true);
        await readAll(built.stack);
        expect(notices).toHaveLength(1);
        expect(notices[0]!.error.code).toBe('UNAVAILABLE');
        expect(notices[0]!.message).toMatch(/origin 'origin' cannot be reached .*without validating them/);
        expect(built.offline.served).toBeGreaterThanOrEqual(keys.length);
        // An object that is not cached cannot be served.
        const miss = await built.stack.read('llama/not-cached.bin').catch((e: unknown) => e);
        expect(isTierError(miss, 'UNAVAILABLE'), String(miss)).toBe(true);
      } finally {
        await built.stack.close();
      }
    }
  }, 120_000);

  it('the default notice is one process warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => {
      if ((w as Error & { code?: string }).code === 'TIERKIT_UNVALIDATED') warnings.push(w);
    };
    process.on('warning', onWarning);
    const built = await stackFromConfig({ tiers: [join(work, 'warm'), s3Url], staleIfError: true });
    try {
      await readAll(built.stack);
      await readAll(built.stack);
      // Warnings are emitted on the next tick.
      await new Promise((r) => setImmediate(r));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.message).toMatch(/serving cached copies without validating/);
    } finally {
      process.off('warning', onWarning);
      await built.stack.close();
    }
  }, 60_000);
});

describe('OriginOutage', () => {
  it('after an unreachable origin, fails stats at once for quietMs with the same error, then asks again', async () => {
    // A real S3 tier on a port nothing listens on (connection refused), one attempt per request.
    const dead = createS3Tier({
      bucket: 'models',
      ...localS3ClientConfig('http://127.0.0.1:9'),
      retry: { attempts: 1 },
    });
    let now = 1_000;
    const guarded = new OriginOutage(dead, { quietMs: 10_000, clock: () => now });
    const first = await guarded.stat('a').catch((e: unknown) => e);
    expect(isTierError(first, 'UNAVAILABLE'), String(first)).toBe(true);
    now += 9_999;
    // Not asked again: the very same error comes back.
    expect(await guarded.stat('b').catch((e: unknown) => e)).toBe(first);
    now += 2;
    const later = await guarded.stat('a').catch((e: unknown) => e);
    expect(isTierError(later, 'UNAVAILABLE')).toBe(true);
    expect(later).not.toBe(first);
    await guarded.close();
  });
});
