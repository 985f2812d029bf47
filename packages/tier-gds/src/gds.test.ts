import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capabilities } from '@tierkit/native';
import { isTierError } from '@tierkit/tier-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  chunkHashOf,
  decodeLmcacheHeader,
  encodeLmcacheHeader,
  GdsTier,
  gdsOptionsFromLmcache,
  LMCACHE_HEADER_SIZE,
  parseLmcacheConfig,
  pyQuote,
} from './index.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tierkit-gds-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const LMKEY = 'vllm@meta-llama/Llama-3.1-8B@1@0@7f3a9c21e0b44d12@bfloat16';

describe('LMCache GDS layout', () => {
  it('quotes like Python urllib.parse.quote(safe="")', () => {
    expect(pyQuote("a/b c@d!'()*~_.-")).toBe('a%2Fb%20c%40d%21%27%28%29%2A~_.-');
    expect(chunkHashOf(LMKEY)).toBe('7f3a9c21e0b44d12');
    expect(chunkHashOf('plain/key')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('writes the data file, header and .metadata where LMCache looks for them', async () => {
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off' });
    const bytes = new Uint8Array(10_000).map((_, i) => i % 251);
    await tier.write(LMKEY, bytes, { source: { size: 10_000, etag: '"x"' } });
    const file = join(root, '7f', '3a', `${pyQuote(LMKEY)}.kvcache.safetensors`);
    const disk = readFileSync(file);
    expect(disk.byteLength).toBe(LMCACHE_HEADER_SIZE + 10_000);
    expect(disk.readBigUInt64LE(0)).toBe(4088n);
    const meta = decodeLmcacheHeader(disk.subarray(0, LMCACHE_HEADER_SIZE))!;
    expect(meta).toMatchObject({ dtype: 'U8', shape: [10_000], dataOffsets: [0, 10_000] });
    expect(meta.metadata.lmcache_version).toBe('1');
    expect(Buffer.from(disk.subarray(LMCACHE_HEADER_SIZE)).equals(Buffer.from(bytes))).toBe(true);
    expect(readFileSync(`${file}.metadata`).equals(disk.subarray(0, LMCACHE_HEADER_SIZE))).toBe(true);
    // No temporary files are left behind.
    expect(readdirSync(join(root, '7f', '3a')).sort()).toEqual(
      [`${pyQuote(LMKEY)}.kvcache.safetensors`, `${pyQuote(LMKEY)}.kvcache.safetensors.metadata`].sort(),
    );
    expect((await tier.stat(LMKEY))?.source).toEqual({ size: 10_000, etag: '"x"' });
    await tier.close();
  });

  it('reads, lists, verifies and evicts a cache LMCache wrote', async () => {
    // An entry exactly as LMCache's _save_gds writes it: BF16 KV chunk, fmt 1.
    const data = Buffer.alloc(2 * 32 * 256 * 8, 3);
    const header = encodeLmcacheHeader({
      dtype: 'BF16',
      shape: [2, 32, 256, 4],
      fmt: 1,
      dataOffsets: [0, data.byteLength],
      metadata: { lmcache_version: '1' },
    });
    const dir = join(root, '7f', '3a');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    const file = join(dir, `${pyQuote(LMKEY)}.kvcache.safetensors`);
    await writeFile(file, Buffer.concat([header, data]));
    await writeFile(`${file}.metadata`, header);
    const other = 'vllm@m@1@0@00aa00aa@bfloat16';
    const tier = new GdsTier({ gdsPath: root, useCufile: 'auto' });
    await tier.write(other, new Uint8Array(100));
    expect((await tier.read(LMKEY))!.byteLength).toBe(data.byteLength);
    expect(await tier.describe(LMKEY)).toMatchObject({ dtype: 'BF16', shape: [2, 32, 256, 4], fmt: 1 });
    const keys: string[] = [];
    for await (const m of tier.list('vllm@')) keys.push(m.key);
    expect(keys).toEqual([other, LMKEY].sort());
    expect(await tier.verify()).toEqual([]);
    // A torn entry: truncated data and a missing companion are both reported.
    await writeFile(file, Buffer.concat([header, data.subarray(0, 10)]));
    await rm(`${join(root, '00', 'aa', pyQuote(other))}.kvcache.safetensors.metadata`);
    const problems = await tier.verify();
    expect(problems.map((p) => p.problem).sort()).toEqual([
      'missing .metadata (LMCache will not load it)',
      expect.stringMatching(/^truncated/),
    ]);
    // The truncated entry is not served.
    expect(await tier.read(LMKEY)).toBeUndefined();
    // Eviction by idle time removes the old one, data and metadata both.
    await writeFile(file, Buffer.concat([header, data]));
    const old = new Date(Date.now() - 3_600_000);
    await utimes(file, old, old);
    expect(await tier.evict({ idleMs: 600_000 })).toEqual([LMKEY]);
    expect(existsSync(file) || existsSync(`${file}.metadata`)).toBe(false);
    expect(await tier.evict({ maxBytes: 0 })).toEqual([other]);
    expect(await tier.prewarm()).toBe(0);
    await tier.close();
  });

  it('prewarms every byte', async () => {
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off', cufileBufferSize: 1 });
    await tier.write('a/x', new Uint8Array(3 * 1024 * 1024 + 5));
    await tier.write('a/y', new Uint8Array(7));
    expect(await tier.prewarm('a/')).toBe(3 * 1024 * 1024 + 12);
    await tier.close();
  });
});

describe('modes and fallback', () => {
  it('falls back to POSIX when libcufile or a GPU is missing, and says why', () => {
    const tier = new GdsTier({ gdsPath: root });
    const caps = capabilities();
    if (!caps.cufile.available || !caps.cuda.available) {
      expect(tier.mode.device).toBe('posix');
      expect(tier.mode.reason).toMatch(/libcufile|CUDA/);
      expect(tier.engineName).toBe('native-pool');
      expect(() => new GdsTier({ gdsPath: root, useCufile: 'on' })).toThrow(/useCufile is on/);
    }
    expect(new GdsTier({ gdsPath: root, useCufile: false }).mode.reason).toBe('useCufile is off');
    expect(tier.capability.deviceMemory).toBe(true);
  });

  it('refuses bad options with typed errors', () => {
    const check = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
        return;
      }
      throw new Error('no error');
    };
    check(() => new GdsTier({ gdsPath: ' , ' }));
    check(() => new GdsTier({ gdsPath: root, cufileBufferSize: 0 }));
    check(() => new GdsTier({ gdsPath: root, useCufile: 'sometimes' as 'on' }));
  });
});

describe('LMCache config', () => {
  it('maps chunk_size, gds_path, cufile_buffer_size and extra_config.use_cufile', async () => {
    const cfg = parseLmcacheConfig(`
chunk_size: 256
gds_path: "${root}/a,${root}/b"
cufile_buffer_size: 512
extra_config:
  use_cufile: "False"
  use_direct_io: true
remote_storage_plugins: ["hf3fs.primary"]
`);
    expect(cfg).toMatchObject({ chunkSize: 256, cufileBufferSize: 512, useCufile: 'off', useDirectIo: true });
    const tier = new GdsTier(gdsOptionsFromLmcache(cfg));
    await tier.ready;
    expect(tier.gdsPaths).toEqual([join(root, 'a'), join(root, 'b')]);
    expect(tier.bufferBytes).toBe(512 * 1024 * 1024);
    expect(tier.chunkSize).toBe(256);
    expect(tier.mode.device).toBe('posix');
    await tier.close();
  });

  it('refuses malformed configs clearly', () => {
    expect(() => parseLmcacheConfig('chunk_size: [1')).toThrow(/not valid YAML/);
    expect(() => parseLmcacheConfig('chunk_size: lots')).toThrow(/chunk_size must be a number/);
    expect(() => gdsOptionsFromLmcache(parseLmcacheConfig('chunk_size: 256'))).toThrow(/gds_path is not set/);
  });
});
