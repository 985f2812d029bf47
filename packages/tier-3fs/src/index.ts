export { loadLmcacheConfig, parseLmcacheConfig } from '@tierkit/tier-gds';
export {
  createHf3fsTier,
  FsConnectorLayout,
  HF3FS_LIMITS,
  type Hf3fsMode,
  type Hf3fsNaming,
  Hf3fsTier,
  type Hf3fsTierOptions,
  hf3fsCapability,
  hf3fsOptions,
  UsrbioEngine,
} from './hf3fs.js';
export { hf3fsOptionsFromLmcache } from './lmcache.js';
