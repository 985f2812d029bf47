/** The environment variables the CLI and `configFromEnv` read (no imports: the CLI's help shows them). */
import type { TierkitConfig } from './config.js';

/** The `TIERKIT_*` variables and the config field each sets. */
export const ENV_VARS: Readonly<Record<string, keyof TierkitConfig>> = {
  TIERKIT_CACHE: 'cache',
  TIERKIT_ORIGIN: 'origin',
  TIERKIT_TIERS: 'tiers',
  TIERKIT_VALIDATE: 'validate',
  TIERKIT_STALE_IF_ERROR: 'staleIfError',
  TIERKIT_WRITE_MODE: 'writeMode',
  TIERKIT_MANIFEST: 'manifest',
  TIERKIT_CONCURRENCY: 'concurrency',
  TIERKIT_MAX_BYTES_IN_FLIGHT: 'maxBytesInFlight',
  TIERKIT_BLOCK_SIZE: 'blockSize',
  TIERKIT_PURGE_UNUSED_AFTER: 'purgeUnusedAfter',
  TIERKIT_CHECK_UNUSED_EVERY: 'checkUnusedEvery',
  TIERKIT_MAX_BYTES: 'maxBytes',
  TIERKIT_METRICS_PORT: 'metricsPort',
  TIERKIT_DISABLE_CACHE: 'disableCache',
  TIERKIT_NOW_MS: 'nowMs',
};

/**
 * Other names for a variable, honoured when the `TIERKIT_*` one is unset:
 * HPE MLIS's switch for its model cache.
 */
export const ENV_ALIASES: Readonly<Record<string, string>> = {
  AIOLI_DISABLE_MODEL_CACHE: 'TIERKIT_DISABLE_CACHE',
};
