import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeGdsHeader, encodeGdsHeader, GDS_HEADER_SIZE, gdsDataPath, pyQuote } from '@tierkit/lmcache';
import { capabilities } from '@tierkit/native';
import { isTierError } from '@tierkit/tier-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GdsTier, gdsOptionsFromLmcache, parseLmcacheConfig } from './index.js';

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tierkit-gds-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const LMKEY = 'meta-llama/Llama-3.1-8B@1@0@7f3a9c21e0b44d12@bfloat16';

describe('LMCache GDS layout', () => {
  it('writes the data file, header and .metadata where LMCache looks for them', async () => {
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off' });
    const bytes = new Uint8Array(2 * 2 * 16 * 8 * 2).map((_, i) => i % 251);
    await tier.writeTensor(
      LMKEY,
      bytes,
      { dtype: 'BF16', shape: [2, 2, 16, 8], fmt: 1 },
      {
        source: { size: bytes.byteLength, etag: '"x"' },
      },
    );
    const file = gdsDataPath(root, LMKEY);
    expect(file).toBe(join(root, '91', '67', `${pyQuote(LMKEY)}.kvcache.safetensors`));
    const disk = readFileSync(file);
    expect(disk.byteLength).toBe(GDS_HEADER_SIZE + bytes.byteLength);
    expect(disk.readBigUInt64LE(0)).toBe(4088n);
    const meta = decodeGdsHeader(disk.subarray(0, GDS_HEADER_SIZE))!;
    expect(meta).toMatchObject({
      dtype: 'BF16',
      shape: [2, 2, 16, 8],
      fmt: 1,
      dataOffsets: [0, bytes.byteLength],
    });
    expect(meta.metadata.lmcache_version).toBe('1');
    expect(meta.unloadable).toBeUndefined();
    expect(Buffer.from(disk.subarray(GDS_HEADER_SIZE)).equals(Buffer.from(bytes))).toBe(true);
    expect(readFileSync(`${file}.metadata`).equals(disk.subarray(0, GDS_HEADER_SIZE))).toBe(true);
    // No temporary files are left behind.
    expect(readdirSync(join(root, '91', '67')).sort()).toEqual(
      [`${pyQuote(LMKEY)}.kvcache.safetensors`, `${pyQuote(LMKEY)}.kvcache.safetensors.metadata`].sort(),
    );
    expect((await tier.stat(LMKEY))?.source).toEqual({ size: bytes.byteLength, etag: '"x"' });
    expect(await tier.describe(LMKEY)).toMatchObject({ dtype: 'BF16', shape: [2, 2, 16, 8] });
    await tier.close();
  });

  it("records the key's dtype and the configured chunk shape for plain writes, else bytes", async () => {
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off', kvShape: [2, 2, 16, 8] });
    await tier.write(LMKEY, new Uint8Array(2 * 2 * 10 * 8 * 2)); // a partial chunk: 10 tokens
    expect(await tier.describe(LMKEY)).toMatchObject({ dtype: 'BF16', shape: [2, 2, 10, 8], fmt: 1 });
    // Bytes that fit no chunk shape are recorded as bytes: LMCache must not take them for KV data.
    await tier.write('m@1@0@abcdef0123@fp8_e4m3fn', new Uint8Array(7));
    expect(await tier.describe('m@1@0@abcdef0123@fp8_e4m3fn')).toMatchObject({
      dtype: 'U8',
      shape: [7],
      fmt: 4,
    });
    // A key that is not LMCache's is stored as bytes.
    await tier.write('plain/key', new Uint8Array(3));
    expect(await tier.describe('plain/key')).toMatchObject({ dtype: 'U8', shape: [3], fmt: 4 });
    await expect(
      tier.writeTensor(LMKEY, new Uint8Array(10), { dtype: 'BF16', shape: [2, 2, 16, 8], fmt: 1 }),
    ).rejects.toThrow(/10 bytes written, the tensor described holds 1024/);
    await tier.close();
  });

  it('keys print canonically: a non-canonical spelling finds the same files', async () => {
    const tier = new GdsTier({ gdsPath: root, useCufile: 'off' });
    await tier.write('m@1@0@00ff00ff00ff@half', new Uint8Array([1, 2]));
    expect(existsSync(gdsDataPath(root, 'm@1@0@ff00ff00ff@half'))).toBe(true);
    expect([...(await tier.read('m@1@0@ff00ff00ff@half'))!]).toEqual([1, 2]);
    const keys: string[] = [];
    for await (const m of tier.list()) keys.push(m.key);
    expect(keys).toEqual(['m@1@0@ff00ff00ff@half']);
    await tier.close();
  });

  it('shards writes by GPU over several paths and reads from any (gds_path_sharding: by_gpu)', async () => {
    const paths = `${root}/nvme0,${root}/nvme1`;
    const gpu1 = new GdsTier({ gdsPath: paths, useCufile: 'off', device: 1 });
    await gpu1.write(LMKEY, new Uint8Array([9, 9]));
    expect(existsSync(gdsDataPath(join(root, 'nvme1'), LMKEY))).toBe(true);
    expect(existsSync(gdsDataPath(join(root, 'nvme0'), LMKEY))).toBe(false);
    const gpu0 = new GdsTier({ gdsPath: paths, useCufile: 'off', device: 0 });
    expect([...(await gpu0.read(LMKEY))!]).toEqual([9, 9]);
    const listed: string[] = [];
    for await (const m of gpu0.list()) listed.push(m.key);
    expect(listed).toEqual([LMKEY]);
    expect(() => new GdsTier({ gdsPath: paths, gdsPathSharding: 'by_rank' as 'by_gpu' })).toThrow(/by_gpu/);
    await gpu0.close();
    await gpu1.close();
  });

  it('reads, lists, verifies and evicts a cache LMCache wrote', async () => {
    // An entry exactly as LMCache's _save_gds writes it: BF16 KV chunk, fmt 1.
    const data = Buffer.alloc(2 * 32 * 16 * 4 * 2, 3);
    const header = encodeGdsHeader({ dtype: 'BF16', shape: [2, 32, 16, 4], fmt: 1 });
    const file = gdsDataPath(root, LMKEY);
    await mkdir(join(file, '..'), { recursive: true });
    await writeFile(file, Buffer.concat([header, data]));
    await writeFile(`${file}.metadata`, header);
    const other = 'm@1@0@00aa00aa00aa@bfloat16';
    const tier = new GdsTier({ gdsPath: root, useCufile: 'auto' });
    await tier.write(other, new Uint8Array(100));
    expect((await tier.read(LMKEY))!.byteLength).toBe(data.byteLength);
    expect(await tier.describe(LMKEY)).toMatchObject({ dtype: 'BF16', shape: [2, 32, 16, 4], fmt: 1 });
    const keys: string[] = [];
    for await (const m of tier.list()) keys.push(m.key);
    expect(keys).toEqual([LMKEY, 'm@1@0@aa00aa00aa@bfloat16'].sort());
    expect(await tier.verify()).toEqual([]);
    // A torn entry: truncated data and a missing companion are both reported.
    await writeFile(file, Buffer.concat([header, data.subarray(0, 10)]));
    await rm(`${gdsDataPath(root, other)}.metadata`);
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
    // A data file still waiting for its .metadata is being published: kept, until it is complete.
    expect(await tier.evict({ maxBytes: 0 })).toEqual([]);
    await tier.write(other, new Uint8Array(100));
    expect(await tier.evict({ maxBytes: 0 })).toEqual(['m@1@0@aa00aa00aa@bfloat16']);
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
  it('maps chunk_size, gds_path, gds_buffer_size (or cufile_buffer_size) and use_gds (or extra_config.use_cufile)', async () => {
    const cfg = parseLmcacheConfig(`
chunk_size: 256
gds_path: "${root}/a,${root}/b"
cufile_buffer_size: 512
extra_config:
  use_cufile: "False"
  use_direct_io: true
`);
    const opts = gdsOptionsFromLmcache(cfg, { device: 1 });
    expect(opts).toMatchObject({
      chunkSize: 256,
      cufileBufferSize: 512,
      useCufile: 'off',
      useDirectIo: true,
    });
    const tier = new GdsTier(opts);
    await tier.ready;
    expect(tier.gdsPaths).toEqual([join(root, 'a'), join(root, 'b')]);
    expect(tier.layout.writeRoot).toBe(join(root, 'b'));
    expect(tier.bufferBytes).toBe(512 * 1024 * 1024);
    expect(tier.chunkSize).toBe(256);
    expect(tier.mode.device).toBe('posix');
    await tier.close();
    // Not chosen: auto, as LMCache (which turns GDS off on tmpfs/overlayfs only then).
    expect(gdsOptionsFromLmcache(parseLmcacheConfig(`gds_path: ${root}`)).useCufile).toBe('auto');
  });

  it('refuses malformed configs clearly', () => {
    expect(() => parseLmcacheConfig('chunk_size: [1')).toThrow(/not valid YAML/);
    expect(() => parseLmcacheConfig('chunk_size: lots')).toThrow(/chunk_size: expected an integer/);
    expect(() => gdsOptionsFromLmcache(parseLmcacheConfig('chunk_size: 256'))).toThrow(/gds_path is not set/);
  });
});
