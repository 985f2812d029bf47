export {
  type ChecksumMode,
  optionsFromUrl,
  type ResolvedS3Config,
  resolveOptions,
  type S3AdaptiveOptions,
  type S3Credentials,
  type S3RetryOptions,
  type S3TierOptions,
} from './options.js';
export { createS3Tier, S3Tier, type S3TierTestHooks, s3TierFromUrl } from './s3-tier.js';
