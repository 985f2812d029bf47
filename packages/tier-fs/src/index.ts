export {
  createFsTier,
  type DescriptorCheck,
  type FillLockOptions,
  type FsChecksum,
  type FsEntryInfo,
  type FsPartialInfo,
  FsTier,
  type FsTierOptions,
  fsTierFromUrl,
  parseSize,
} from './fs-tier.js';
export type { FsLock, LockOptions } from './lock.js';
export { isReservedKey, META_DIR } from './paths.js';
export { VERIFY_BLOCK, type VerifyMode, type VerifyStats } from './verify.js';
