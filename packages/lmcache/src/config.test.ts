import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTierError } from '@tierkit/tier-core';
import { afterAll, describe, expect, it } from 'vitest';
import { lmcacheGdsSettings, lmcacheHf3fsSettings, loadLmcacheConfig, parseLmcacheConfig } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'tierkit-lmcache-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The settings of LMCache's own docs (docs/source/kv_cache/storage_backends/gds.rst and
// 3fs.rst, keys and values as published, typos included; their comments left out).
const GDS_DOC_ENV = {
  LMCACHE_CHUNK_SIZE: '256',
  LMCACHE_GDS_PATH: '"/mnt/gds/cache"',
  LMCACHE_GDS_BUFFER_SIZE: '"8192"',
  LMCACHE_LOCAL_CPU: 'False',
};
const GDS_DOC_YAML = `
chunk_size: 256
local_cpu: false
gds_path: "/mnt/gds/cache"
gds_buffer_size: 8192
`;
const GDS_MULTI_YAML = `
gds_path: "/mnt/nvme0/cache,/mnt/nvme1/cache,/mnt/nvme2/cache,/mnt/nvme3/cache"
gds_path_sharding: "by_gpu"
`;
const HF3FS_DOC_YAML = `
chunk_size: 256
local_cpu: False
remote_storage_plugins: ["hf3fs.primary"]
extra_config:
    remote_storage_plugin.hf3fs.primary.base_path: "/3fs/stage/dir1,/3fs/stage/dir2"
    hf3fs_mount_point: "/3fs/stage"
    hfs3fs_iov_size: 209715200 #200MB
    hfs3fs_ior_entries: 256
    hfs3fs_io_depth: 0
    hfs3fs_numa_id: -1
    hf3fs_io_thread_num: 4
`;

function refused(f: () => unknown, re: RegExp): void {
  try {
    f();
  } catch (err) {
    expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toMatch(re);
    return;
  }
  throw new Error(`accepted; expected ${re}`);
}

describe("LMCache's documented configs load unchanged", () => {
  it('GDS, from the environment', async () => {
    const c = await loadLmcacheConfig({ env: GDS_DOC_ENV });
    expect(c).toMatchObject({
      chunkSize: 256,
      gdsPath: '/mnt/gds/cache',
      gdsBufferSize: 8192,
      localCpu: false,
      useGds: undefined,
    });
    expect(c.sources).toMatchObject({
      chunk_size: 'env',
      gds_path: 'env',
      local_cpu: 'env',
      use_gds: 'default',
    });
    expect(lmcacheGdsSettings(c)).toEqual({
      paths: ['/mnt/gds/cache'],
      sharding: 'by_gpu',
      useCufile: 'auto',
      backend: 'cufile',
      bufferMiB: 8192,
      useDirectIo: false,
      ioThreads: 4,
      chunkSize: 256,
    });
  });

  it('GDS, from YAML (LMCACHE_CONFIG_FILE), one path and several', async () => {
    const file = join(dir, 'gds.yaml');
    writeFileSync(file, GDS_DOC_YAML);
    const c = await loadLmcacheConfig({ env: { LMCACHE_CONFIG_FILE: file } });
    expect(c).toMatchObject({
      chunkSize: 256,
      gdsPath: '/mnt/gds/cache',
      gdsBufferSize: 8192,
      localCpu: false,
    });
    expect(c.sources.gds_buffer_size).toBe('file');
    const multi = lmcacheGdsSettings(parseLmcacheConfig(GDS_MULTI_YAML));
    expect(multi.paths).toHaveLength(4);
    expect(
      lmcacheGdsSettings(
        await loadLmcacheConfig({ env: { LMCACHE_GDS_PATH: '/a,/b', LMCACHE_GDS_PATH_SHARDING: 'by_gpu' } }),
      ).paths,
    ).toEqual(['/a', '/b']);
  });

  it('3FS, from YAML, with the documented misspellings named', () => {
    const c = parseLmcacheConfig(HF3FS_DOC_YAML);
    expect(c.warnings.filter((w) => /hfs3fs_/.test(w))).toHaveLength(4);
    expect(lmcacheHf3fsSettings(c)).toEqual([
      {
        plugin: 'hf3fs.primary',
        mountPoint: '/3fs/stage',
        basePaths: ['/3fs/stage/dir1', '/3fs/stage/dir2'],
        iovSize: 209715200,
        iorEntries: 256,
        ioDepth: 0,
        numaId: -1,
        ioThreadNum: 4,
        saveChunkMeta: true,
      },
    ]);
  });

  it('3FS, from the environment (LMCACHE_EXTRA_CONFIG as JSON) and the legacy hf3fs:// URL', async () => {
    const c = await loadLmcacheConfig({
      env: {
        LMCACHE_REMOTE_URL: 'hf3fs:///3fs/stage/a,/3fs/stage/b',
        LMCACHE_EXTRA_CONFIG: JSON.stringify({
          hf3fs_mount_point: '/3fs/stage',
          hf3fs_io_depth: '-8',
          save_chunk_meta: false,
        }),
      },
    });
    expect(lmcacheHf3fsSettings(c)).toMatchObject([
      { plugin: 'hf3fs', basePaths: ['/3fs/stage/a', '/3fs/stage/b'], ioDepth: -8, saveChunkMeta: false },
    ]);
  });
});

describe('precedence and spellings', () => {
  it('file, then LMCACHE_* over it (extra_config as a whole), then overrides', async () => {
    const file = join(dir, 'p.yaml');
    writeFileSync(
      file,
      'chunk_size: 128\ngds_path: /x\nextra_config: {use_direct_io: true, disk_io_threads: 2}\n',
    );
    const c = await loadLmcacheConfig({
      file,
      env: {
        LMCACHE_CHUNK_SIZE: '512',
        LMCACHE_EXTRA_CONFIG: '{"disk_io_threads": 8}',
        LMCACHE_CONFIG_FILE: '/ignored.yaml',
      },
      overrides: { gds_path: '/y' },
    });
    expect([c.chunkSize, c.gdsPath, c.extraConfig]).toEqual([512, '/y', { disk_io_threads: 8 }]);
    expect(c.sources).toMatchObject({ chunk_size: 'env', gds_path: 'override', extra_config: 'env' });
    // Without a file, the environment alone.
    expect((await loadLmcacheConfig({ env: {} })).chunkSize).toBe(256);
  });

  it('reads old and new spellings, the new winning', () => {
    expect(parseLmcacheConfig('cufile_buffer_size: 512').gdsBufferSize).toBe(512);
    const both = parseLmcacheConfig('cufile_buffer_size: 512\ngds_buffer_size: 1024');
    expect(both.gdsBufferSize).toBe(1024);
    expect(both.warnings[0]).toMatch(/disagree/);
    const off = parseLmcacheConfig('gds_path: /g\nextra_config:\n  use_cufile: "False"');
    expect(lmcacheGdsSettings(off).useCufile).toBe('off');
    expect(
      lmcacheGdsSettings(parseLmcacheConfig('gds_path: /g\nextra_config: {use_gds: true}')).useCufile,
    ).toBe('on');
    const explicit = parseLmcacheConfig('gds_path: /g\nuse_gds: false\nextra_config: {use_cufile: true}');
    expect(lmcacheGdsSettings(explicit).useCufile).toBe('off');
    expect(parseLmcacheConfig('local_cpu: yes').localCpu).toBe(true); // YAML 1.1, as PyYAML
    expect(parseLmcacheConfig('local_disk: "file://local/disk/"').localDisk).toBe('local/disk/');
    expect(parseLmcacheConfig('some_other_option: 3').ignored).toEqual({ some_other_option: 3 });
  });

  it('refuses what LMCache (Python int()) refuses, naming the key and the allowed range', async () => {
    await expect(loadLmcacheConfig({ env: { LMCACHE_CHUNK_SIZE: '0x100' } })).rejects.toThrow(
      /LMCACHE_CHUNK_SIZE: expected an integer \(Python int\(\)\), in \[1, inf\], got "0x100"/,
    );
    await expect(loadLmcacheConfig({ env: { LMCACHE_GDS_BUFFER_SIZE: '1e2' } })).rejects.toThrow(
      /LMCACHE_GDS_BUFFER_SIZE/,
    );
    // YAML as PyYAML reads it: 1e2 is a string (int() refuses it), 0x100 an integer (256).
    refused(() => parseLmcacheConfig('chunk_size: 1e2'), /chunk_size: expected an integer/);
    expect(parseLmcacheConfig('chunk_size: 0x100').chunkSize).toBe(256);
    refused(() => parseLmcacheConfig('chunk_size: 0'), /chunk_size: 0 is out of range, in \[1, inf\]/);
    refused(() => parseLmcacheConfig('gds_path_sharding: by_rank'), /must be one of by_gpu/);
    refused(() => parseLmcacheConfig('local_cpu: maybe'), /local_cpu: expected true or false/);
    refused(() => parseLmcacheConfig('[1, 2]'), /must be a mapping/);
    refused(() => parseLmcacheConfig('chunk_size: [1'), /not valid YAML/);
    await expect(loadLmcacheConfig({ env: { LMCACHE_EXTRA_CONFIG: '{nope' } })).rejects.toThrow(
      /LMCACHE_EXTRA_CONFIG: not valid JSON/,
    );
    const bad = parseLmcacheConfig(`${HF3FS_DOC_YAML}    hf3fs_ior_entries: 64\n`);
    refused(
      () => lmcacheHf3fsSettings(bad),
      /extra_config.hf3fs_ior_entries: 64 is out of range, in \[128, 1024\]/,
    );
    refused(() => lmcacheGdsSettings(parseLmcacheConfig('chunk_size: 256')), /gds_path is not set/);
    await expect(loadLmcacheConfig({ file: join(dir, 'missing.yaml') })).rejects.toThrow(/missing.yaml/);
  });
});
