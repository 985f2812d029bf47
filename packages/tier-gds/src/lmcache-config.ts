/**
 * GdsTier options from an LMCache configuration (loaded by @tierkit/lmcache as
 * LMCache loads it: YAML file and/or LMCACHE_* environment), so a deployment points
 * tierkit at exactly the cache LMCache uses.
 */
import { type LmcacheConfig, lmcacheGdsSettings } from '@tierkit/lmcache';
import type { GdsTierOptions } from './gds.js';

export { type LmcacheConfig, loadLmcacheConfig, parseLmcacheConfig } from '@tierkit/lmcache';

/** GdsTier options from an LMCache config; `gds_path` is required. */
export function gdsOptionsFromLmcache(
  config: LmcacheConfig,
  overrides: Partial<GdsTierOptions> = {},
): GdsTierOptions {
  const g = lmcacheGdsSettings(config);
  return {
    gdsPath: g.paths,
    gdsPathSharding: g.sharding,
    // tierkit drives cuFile only: with hipFile chosen, POSIX I/O on the same files.
    useCufile: g.backend === 'hipfile' ? 'off' : g.useCufile,
    useDirectIo: g.useDirectIo,
    chunkSize: g.chunkSize,
    ...(g.bufferMiB !== null ? { cufileBufferSize: g.bufferMiB } : {}),
    ...(g.ioThreads > 0 ? { ioThreads: g.ioThreads } : {}),
    ...overrides,
  };
}
