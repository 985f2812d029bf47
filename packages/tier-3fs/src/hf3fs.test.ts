import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTierError } from '@tierkit/tier-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Hf3fsTier, hf3fsOptions, hf3fsOptionsFromLmcache, parseLmcacheConfig } from './index.js';

let mount: string;
beforeEach(async () => {
  mount = await mkdtemp(join(tmpdir(), 'tierkit-3fs-'));
});
afterEach(async () => {
  await rm(mount, { recursive: true, force: true });
});

function invalidArg(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
    return (err as Error).message;
  }
  throw new Error('expected INVALID_ARGUMENT');
}

describe('3FS options', () => {
  it('validates LMCache ranges with clear errors', () => {
    const base = { mountPoint: mount, basePath: 'kv' };
    expect(invalidArg(() => hf3fsOptions({ ...base, iovSize: 99 * 1024 * 1024 }))).toMatch(
      /iov_size must be in \[104857600/,
    );
    expect(invalidArg(() => hf3fsOptions({ ...base, iovSize: 2 ** 31 + 1 }))).toMatch(/iov_size/);
    expect(invalidArg(() => hf3fsOptions({ ...base, iorEntries: 127 }))).toMatch(
      /ior_entries must be in \[128, 1024\]/,
    );
    expect(invalidArg(() => hf3fsOptions({ ...base, ioDepth: 129 }))).toMatch(
      /io_depth must be in \[-128, 128\]/,
    );
    expect(invalidArg(() => hf3fsOptions({ ...base, ioThreadNum: 1 }))).toMatch(
      /io_thread_num must be in \[2, 16\]/,
    );
    expect(invalidArg(() => hf3fsOptions({ ...base, numaId: 999 }))).toMatch(/numa_id/);
    expect(invalidArg(() => hf3fsOptions({ ...base, ioDepth: 'deep' }))).toMatch(/must be an integer/);
    // Python int(): no hex, no exponent.
    expect(invalidArg(() => hf3fsOptions({ ...base, iorEntries: '0x100' }))).toMatch(
      /ior_entries must be an integer, got "0x100"/,
    );
    expect(invalidArg(() => hf3fsOptions({ ...base, iorEntries: '1e3' }))).toMatch(
      /ior_entries must be an integer/,
    );
    expect(invalidArg(() => hf3fsOptions({ ...base, iorEntries: 128, ioDepth: 128 }))).toMatch(
      /io_depth must be below ior_entries \(128\)/,
    );
    expect(invalidArg(() => hf3fsOptions({ mountPoint: mount, basePath: '/elsewhere' }))).toMatch(
      /not inside the mount/,
    );
    expect(invalidArg(() => hf3fsOptions({ mountPoint: join(mount, 'nope'), basePath: 'kv' }))).toMatch(
      /does not exist/,
    );
    expect(invalidArg(() => hf3fsOptions({ mountPoint: mount }))).toMatch(/basePath/);
  });

  it("accepts LMCache's key spelling", () => {
    const o = hf3fsOptions({
      hf3fs_mount_point: mount,
      hf3fs_base_path: `${mount}/a, ${mount}/b`,
      hf3fs_iov_size: '209715200',
      hf3fs_ior_entries: 512,
      hf3fs_io_depth: -8,
      hf3fs_numa_id: -1,
      hf3fs_io_thread_num: 8,
    });
    expect(o).toMatchObject({
      mountPoint: mount,
      basePaths: [join(mount, 'a'), join(mount, 'b')],
      iovSize: 209715200,
      iorEntries: 512,
      ioDepth: -8,
      ioThreadNum: 8,
    });
    expect(hf3fsOptions({ mount_point: mount, base_path: 'x', iov_size: 104857600 }).iovSize).toBe(104857600);
  });
});

describe('Hf3fsTier', () => {
  it('falls back to POSIX on the mount without the client library, and says why', async () => {
    const tier = new Hf3fsTier({ mountPoint: mount, basePath: 'kv' });
    expect(tier.mode.engine).toBe('posix');
    expect(tier.mode.reason).toMatch(/3FS client library unavailable/);
    expect(() => new Hf3fsTier({ mountPoint: mount, basePath: 'kv', useUsrbio: 'on' })).toThrow(
      /useUsrbio is on/,
    );
    await tier.close();
  });

  it("names files as LMCache's FS connector does, picking the base path by chunk hash", async () => {
    const tier = new Hf3fsTier({ mountPoint: mount, basePath: 'a,b', naming: 'lmcache', useUsrbio: 'off' });
    // abs(chunk_hash) % 2: -7 → base path 1.
    const key = 'meta-llama/Llama-3.1-8B@1@0@-7@bfloat16';
    const name = 'meta-llama-SEP-Llama-3.1-8B@1@0@-7@bfloat16.data';
    await tier.writeTensor(key, new Uint8Array([1, 2, 3, 4]), { dtype: 'BF16', shape: [2, 1, 1, 1], fmt: 1 });
    expect(readdirSync(join(mount, 'b'))).toEqual([name]);
    const disk = readFileSync(join(mount, 'b', name));
    // save_chunk_meta: the 28-byte RemoteMetadata, then the data.
    expect([...new Int32Array(disk.buffer.slice(disk.byteOffset, disk.byteOffset + 28))]).toEqual([
      4, 1, 3, 2, 1, 1, 1,
    ]);
    expect([...disk.subarray(28)]).toEqual([1, 2, 3, 4]);
    expect([...(await tier.read(key))!]).toEqual([1, 2, 3, 4]);
    expect(await tier.describe(key)).toEqual({ length: 4, fmt: 1, dtype: 'BF16', shape: [2, 1, 1, 1] });
    // A key written with naming 'lmcache' lists back as the same key.
    const listed: string[] = [];
    for await (const m of tier.list()) listed.push(m.key);
    expect(listed).toEqual([key]);
    await tier.close();
    const raw = new Hf3fsTier({
      mountPoint: mount,
      basePath: 'c',
      naming: 'lmcache',
      saveChunkMeta: false,
      useUsrbio: 'off',
    });
    await raw.write(key, new Uint8Array([5, 6]));
    expect([...readFileSync(join(mount, 'c', name))]).toEqual([5, 6]);
    expect((await raw.stat(key))?.size).toBe(2);
    await raw.close();
  });

  it('builds from an LMCache YAML with an hf3fs plugin', async () => {
    const cfg = parseLmcacheConfig(`
chunk_size: 256
remote_storage_plugins: ["hf3fs.primary"]
extra_config:
  remote_storage_plugin.hf3fs.primary.base_path: "${mount}/kv"
  hf3fs_mount_point: "${mount}"
  hf3fs_iov_size: 104857600
  hf3fs_ior_entries: 128
  hf3fs_io_depth: 0
  hf3fs_io_thread_num: 2
`);
    const tier = new Hf3fsTier({ ...hf3fsOptionsFromLmcache(cfg, 'hf3fs.primary'), useUsrbio: 'off' });
    expect(tier.name).toBe('hf3fs.primary');
    expect(tier.options).toMatchObject({
      basePaths: [join(mount, 'kv')],
      iovSize: 104857600,
      naming: 'lmcache',
    });
    await tier.close();
    expect(() => hf3fsOptionsFromLmcache(cfg, 'hf3fs.other')).toThrow(/no hf3fs.other plugin/);
  });
});
