export { type BakeOptions, type BakeSummary, bake } from './bake.js';
export {
  type BuiltStack,
  cacheFromConfig,
  configFromEnv,
  ENV_VARS,
  loadConfigFile,
  mergeConfig,
  originFromConfig,
  stackFromConfig,
  type TierkitConfig,
} from './config.js';
export {
  globPrefix,
  globToRegExp,
  loadManifest,
  type Manifest,
  type ModelJson,
  manifestFromItems,
  manifestFromModelJson,
  mergeManifests,
  parseManifest,
  resolveManifest,
} from './manifest.js';
export { InstrumentedTier, READ_LATENCY_BUCKETS, TierkitMetrics } from './metrics.js';
export {
  type PurgeOptions,
  type PurgeResult,
  type PurgeSchedule,
  purge,
  type SchedulePurgeOptions,
  schedulePurge,
} from './purge.js';
export { type ItemError, isOperatorCache, type OperatorCache } from './util.js';
export {
  BAD_STATUSES,
  type VerifyItem,
  type VerifyOptions,
  type VerifyStatus,
  type VerifySummary,
  verify,
} from './verify.js';
export {
  type WarmItemResult,
  type WarmOptions,
  type WarmProgress,
  type WarmStatus,
  type WarmSummary,
  warm,
} from './warm.js';
