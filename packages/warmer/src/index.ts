export { type BakeOptions, type BakeSummary, bake } from './bake.js';
export {
  type BuiltStack,
  cacheFromConfig,
  configFromEnv,
  describeOrigin,
  ENV_ALIASES,
  ENV_VARS,
  loadConfigFile,
  mergeConfig,
  originFromConfig,
  type PlannedTier,
  planTiers,
  type StackFromConfigOptions,
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
export { OfflineServing, OriginOutage, type UnvalidatedNotice } from './offline.js';
export {
  type PurgeOptions,
  type PurgeResult,
  type PurgeSchedule,
  purge,
  type SchedulePurgeOptions,
  schedulePurge,
} from './purge.js';
export { MEGATRON_SLICES, parseSplitRules, SPLIT_PRESETS } from './tensor-split.js';
export {
  type BuildTierOptions,
  buildTier,
  parseTierEntry,
  type TierEntry,
  type TierScheme,
  type TierSpec,
} from './tiers.js';
export { formatBytes, type ItemError, isOperatorCache, type OperatorCache } from './util.js';
export {
  BAD_STATUSES,
  type VerifyItem,
  type VerifyOptions,
  type VerifyStatus,
  type VerifySummary,
  verify,
} from './verify.js';
export {
  type RefetchReason,
  type WarmItemResult,
  type WarmOptions,
  type WarmProgress,
  type WarmStatus,
  type WarmSummary,
  warm,
} from './warm.js';
export {
  DEFAULT_BLOCK_SIZE,
  type WarmTensorsFile,
  type WarmTensorsOptions,
  type WarmTensorsSummary,
  warmTensors,
} from './warm-tensors.js';
