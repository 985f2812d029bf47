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
  type LmcacheHf3fsConfig,
  loadLmcacheConfig,
  parseLmcacheConfig,
} from './lmcache-config.js';
export {
  chunkHashOf,
  decodeLmcacheHeader,
  encodeLmcacheHeader,
  LMCACHE_DATA_SUFFIX,
  LMCACHE_HEADER_SIZE,
  LMCACHE_METADATA_SUFFIX,
  LmcacheGdsLayout,
  type LmcacheGdsLayoutOptions,
  type LmcacheTensorMeta,
  pyQuote,
  pyUnquote,
} from './lmcache-layout.js';
