export { DeviceBuffer } from '@tierkit/native';
export {
  type FileLayout,
  FileTier,
  type FileTierConfig,
  type HeaderInfo,
  type IoEngine,
  nodeEngine,
  tempSuffix,
} from './file-tier.js';
export {
  createGdsTier,
  type EvictOptions,
  fsTypeOf,
  type GdsMode,
  GdsTier,
  type GdsTierOptions,
  splitPaths,
  type UseCufile,
  type VerifyProblem,
} from './gds.js';
export {
  gdsOptionsFromLmcache,
  type LmcacheConfig,
  loadLmcacheConfig,
  parseLmcacheConfig,
} from './lmcache-config.js';
export {
  type LmcacheDirEntry,
  type LmcacheDirMetrics,
  type LmcacheDirOptions,
  type LmcacheDirProblem,
  LmcacheGdsDirectory,
  type PurgeOptions,
  type PurgeReport,
  type Purger,
  type PurgerOptions,
  startLmcachePurger,
} from './lmcache-dir.js';
export { canonicalKey, LmcacheGdsLayout, type LmcacheGdsLayoutOptions } from './lmcache-layout.js';
