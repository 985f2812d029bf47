import { TierError } from '@tierkit/tier-core';
import type { LmcacheConfig } from '@tierkit/tier-gds';
import type { Hf3fsTierOptions } from './hf3fs.js';

/**
 * Hf3fsTier options for one `hf3fs.<name>` plugin of an LMCache config (the first
 * when `plugin` is not given). Values keep LMCache's spelling until the tier validates them.
 */
export function hf3fsOptionsFromLmcache(
  config: LmcacheConfig,
  plugin?: string,
): Hf3fsTierOptions & Record<string, unknown> {
  const entry = plugin ? config.hf3fs.find((p) => p.plugin === plugin) : config.hf3fs[0];
  if (!entry) {
    throw new TierError(
      'INVALID_ARGUMENT',
      `LMCache config: no ${plugin ?? 'hf3fs'} plugin in remote_storage_plugins (${config.remoteStoragePlugins.join(', ') || 'none'})`,
      { retryable: false },
    );
  }
  return {
    name: entry.plugin,
    mountPoint: entry.mountPoint as string,
    basePath: entry.basePath as string,
    naming: 'lmcache',
    hf3fs_iov_size: entry.iovSize,
    hf3fs_ior_entries: entry.iorEntries,
    hf3fs_io_depth: entry.ioDepth,
    hf3fs_numa_id: entry.numaId,
    hf3fs_io_thread_num: entry.ioThreadNum,
  };
}
