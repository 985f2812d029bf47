import { type LmcacheConfig, lmcacheHf3fsSettings } from '@tierkit/lmcache';
import { TierError } from '@tierkit/tier-core';
import type { Hf3fsTierOptions } from './hf3fs.js';

/**
 * Hf3fsTier options for one `hf3fs.<name>` plugin of an LMCache config (the first
 * when `plugin` is not given; the legacy `remote_url: hf3fs://…` counts as "hf3fs"),
 * with LMCache's file layout: naming 'lmcache', save_chunk_meta as configured.
 */
export function hf3fsOptionsFromLmcache(config: LmcacheConfig, plugin?: string): Hf3fsTierOptions {
  const all = lmcacheHf3fsSettings(config);
  const entry = plugin ? all.find((p) => p.plugin === plugin) : all[0];
  if (!entry) {
    throw new TierError(
      'INVALID_ARGUMENT',
      `LMCache config: no ${plugin ?? 'hf3fs'} plugin in remote_storage_plugins (${config.remoteStoragePlugins.join(', ') || 'none'})`,
      { retryable: false },
    );
  }
  return {
    name: entry.plugin,
    mountPoint: entry.mountPoint,
    basePath: entry.basePaths,
    naming: 'lmcache',
    saveChunkMeta: entry.saveChunkMeta,
    iovSize: entry.iovSize,
    iorEntries: entry.iorEntries,
    ioDepth: entry.ioDepth,
    numaId: entry.numaId,
    ioThreadNum: entry.ioThreadNum,
  };
}
