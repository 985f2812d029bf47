export { loadLmcacheConfig, parseLmcacheConfig } from '@tierkit/lmcache';
export { FsConnectorLayout, type FsTensor, type Hf3fsNaming } from './fs-layout.js';
export {
  createHf3fsTier,
  HF3FS_LIMITS,
  type Hf3fsMode,
  Hf3fsTier,
  type Hf3fsTierOptions,
  hf3fsCapability,
  hf3fsOptions,
} from './hf3fs.js';
export { hf3fsOptionsFromLmcache } from './lmcache.js';
export {
  maxIosInFlight,
  type PlannedIo,
  planIos,
  UsrbioEngine,
  type UsrbioEngineOptions,
} from './usrbio-engine.js';
