import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStack, MemoryTier } from '@tierkit/tier-core';
import { runTierConformance } from '@tierkit/tier-core/testing';
import * as vitest from 'vitest';
import { FsTier } from './index.js';

runTierConformance(vitest, {
  name: 'fs',
  create: async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-fs-conf-'));
    const tier = new FsTier({ root });
    await tier.ready;
    return { tier, cleanup: () => rm(root, { recursive: true, force: true }) };
  },
});

runTierConformance(vitest, {
  name: 'fs with maxBytes, minFreeRatio and small parallel reads',
  create: async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-fs-conf-'));
    const tier = new FsTier({
      root,
      maxBytes: 64 * 1024 * 1024,
      minFreeRatio: 0.01,
      parallelReadThreshold: 64 * 1024,
      readChunkSize: 100_000,
      readConcurrency: 3,
    });
    await tier.ready;
    return { tier, cleanup: () => rm(root, { recursive: true, force: true }) };
  },
});

runTierConformance(vitest, {
  name: 'stack [memory over fs] (whole-object promotion into memory)',
  create: async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-fs-conf-'));
    const tier = createStack([new MemoryTier({ name: 'ram' }), new FsTier({ root })]);
    return { tier, cleanup: () => rm(root, { recursive: true, force: true }) };
  },
});

runTierConformance(vitest, {
  name: 'stack [fs cache over fs origin], block-granular fills of 64 KiB',
  create: async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-fs-conf-'));
    const tier = createStack(
      [
        new FsTier({ root: join(root, 'cache'), name: 'cache' }),
        new FsTier({ root: join(root, 'origin'), name: 'origin' }),
      ],
      { blockSize: 64 * 1024, fillConcurrency: 4 },
    );
    return { tier, cleanup: () => rm(root, { recursive: true, force: true }) };
  },
});
