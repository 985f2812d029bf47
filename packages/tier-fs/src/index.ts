export {
  createFsTier,
  type DescriptorCheck,
  type FillLockOptions,
  type FsChecksum,
  type FsEntryInfo,
  FsTier,
  type FsTierOptions,
  fsTierFromUrl,
  parseSize,
} from './fs-tier.js';
export type { FsLock, LockOptions } from './lock.js';
export { isReservedKey, META_DIR } from './paths.js';
