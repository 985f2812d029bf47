import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTierConformance } from '@tierkit/tier-core/testing';
import * as vitest from 'vitest';
import { GdsTier } from './index.js';

runTierConformance(vitest, {
  name: 'gds (POSIX path, LMCache layout)',
  create: async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-gds-conf-'));
    const tier = new GdsTier({ gdsPath: root, useCufile: 'auto', fsync: false });
    await tier.ready;
    return { tier, cleanup: () => rm(root, { recursive: true, force: true }) };
  },
});

runTierConformance(vitest, {
  name: 'gds with two gds paths, useCufile off',
  create: async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-gds-conf-'));
    const tier = new GdsTier({
      gdsPath: `${join(root, 'a')},${join(root, 'b')}`,
      useCufile: 'off',
      fsync: false,
    });
    await tier.ready;
    return { tier, cleanup: () => rm(root, { recursive: true, force: true }) };
  },
});
