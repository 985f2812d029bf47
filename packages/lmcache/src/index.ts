export {
  LMCACHE_OPTIONS,
  type LmcacheConfig,
  type LmcacheGdsSettings,
  type LmcacheHf3fsSettings,
  type LmcacheOptionName,
  type LoadLmcacheConfigOptions,
  lmcacheGdsSettings,
  lmcacheHf3fsSettings,
  loadLmcacheConfig,
  parseLmcacheConfig,
  parseLmcacheYaml,
  resolveLmcacheConfig,
} from './config.js';
export { type ConfigSource, unquoteEnv } from './config-values.js';
export {
  isKeyDtype,
  isMemoryFormat,
  isTensorDtype,
  KEY_DTYPES,
  type KeyDtype,
  MEMORY_FORMATS,
  REMOTE_CODE_DTYPE,
  REMOTE_DTYPE_CODE,
  TENSOR_DTYPE_BYTES,
  type TensorDtype,
  tensorBytes,
} from './dtypes.js';
export { lmcacheInvalid } from './errors.js';
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
  decodeRemoteMetadata,
  encodeRemoteMetadata,
  FS_DATA_SUFFIX,
  FS_PATH_SEPARATOR,
  fsBasePathIndex,
  fsDataPath,
  fsFileName,
  fsKeyOfFileName,
  fsTempPath,
  REMOTE_METADATA_SIZE,
  type RemoteMetadata,
} from './fs-connector.js';
export {
  decodeGdsHeader,
  encodeGdsHeader,
  GDS_DATA_SUFFIX,
  GDS_HEADER_SIZE,
  GDS_METADATA_SUFFIX,
  GDS_METADATA_VERSION,
  GDS_TEMP_PATTERN,
  GDS_WEKA_DATA_SUFFIX,
  type GdsHeader,
  type GdsTensor,
  gdsDataPath,
  gdsDataSize,
  gdsFileName,
  gdsHashDirs,
  gdsHeaderDataBytes,
  gdsKeyOfFileName,
  gdsTensorFor,
} from './gds.js';
export {
  type CacheEngineKey,
  cacheKey,
  chunkHashDecimal,
  chunkHashHex,
  formatCacheKey,
  type KeyFormat,
  parseCacheKey,
  tryParseCacheKey,
} from './key.js';
export { openToInspect } from './no-atime.js';
export { pyIntParse, pyJsonDumps, pyQuote, pyUnquote } from './python.js';
