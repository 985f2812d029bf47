export { BlockFill, type BlockFillConfig } from './block-fill.js';
export * from './bytes.js';
export { type DigestSpec, type DigestState, digestKit } from './digest-kit.js';
export { DigestSession, digestBytes, INLINE_DIGEST_BYTES, prestartDigestWorker } from './digest-worker.js';
export * from './errors.js';
export * from './keys.js';
export { DelegatingTier } from './layers/delegate.js';
export {
  LATENCY_BUCKETS,
  MetricsTier,
  TierMetrics,
  type TierMetricsSnapshot,
  withMetrics,
} from './layers/metrics.js';
export { type RetryOptions, resolveRetryOptions, retrying, sleep, withRetry } from './layers/retry.js';
export { withSingleFlight } from './layers/single-flight.js';
export * from './memory.js';
export * from './policy.js';
export * from './ranges.js';
export * from './stack.js';
export * from './tier.js';
