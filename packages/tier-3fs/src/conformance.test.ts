import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadHf3fs } from '@tierkit/native';
import { runTierConformance } from '@tierkit/tier-core/testing';
import * as vitest from 'vitest';
import { Hf3fsTier } from './index.js';
import { buildStandIn, standInMount } from './test-utils.js';

runTierConformance(vitest, {
  name: '3fs (POSIX on the mount)',
  create: async () => {
    const mount = await mkdtemp(join(tmpdir(), 'tierkit-3fs-conf-'));
    const tier = new Hf3fsTier({
      mountPoint: mount,
      basePath: `${mount}/kv1,${mount}/kv2`,
      useUsrbio: 'off',
      fsync: false,
    });
    return { tier, cleanup: () => rm(mount, { recursive: true, force: true }) };
  },
});

// USRBIO through the test-built STAND-IN for libhf3fs_api_shared.so (not real 3FS).
const standIn = buildStandIn();
if (standIn.path) {
  runTierConformance(vitest, {
    name: '3fs (USRBIO against the strict 3FS stand-in, io_depth 4, LMCache naming)',
    create: async () => {
      const mount = standInMount('tierkit-3fs-usrbio-');
      process.env.HF3FS_STANDIN_MOUNT = mount;
      loadHf3fs(standIn.path);
      const tier = new Hf3fsTier({
        mountPoint: mount,
        basePath: 'kv',
        useUsrbio: 'on',
        iovSize: 100 * 1024 * 1024,
        iorEntries: 128,
        ioDepth: 4,
        ioThreadNum: 2,
        naming: 'lmcache',
        usrbioPieceSize: 64 * 1024,
        fsync: false,
      });
      return { tier, cleanup: () => rm(mount, { recursive: true, force: true }) };
    },
  });
}
