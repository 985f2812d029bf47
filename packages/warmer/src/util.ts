import { isTierError, type Tier, TierError } from '@tierkit/tier-core';
import type { FsTier } from '@tierkit/tier-fs';

/** A failure of one object, as reported in summaries and `--json`. */
export interface ItemError {
  readonly code: string;
  readonly message: string;
}

export function errorInfo(err: unknown): ItemError {
  if (isTierError(err)) return { code: err.code, message: err.message };
  return { code: 'UNKNOWN', message: err instanceof Error ? err.message : String(err) };
}

/** An fs tier's operator API (checked by shape, so two copies of tier-fs interoperate). */
export type OperatorCache = Pick<
  FsTier,
  | 'entryInfo'
  | 'computeChecksum'
  | 'setChecksum'
  | 'pin'
  | 'unpin'
  | 'isPinned'
  | 'purgeIdle'
  | 'purgeToBytes'
  | 'usedBytes'
  | 'count'
  | 'root'
  | 'evictions'
  | 'evictedBytes'
  | 'policy'
> &
  Tier;

export function isOperatorCache(t: Tier | undefined): t is OperatorCache {
  const c = t as Partial<OperatorCache> | undefined;
  return (
    typeof c?.entryInfo === 'function' &&
    typeof c.computeChecksum === 'function' &&
    typeof c.setChecksum === 'function' &&
    typeof c.purgeToBytes === 'function'
  );
}

export function requireOperatorCache(t: Tier | undefined, what: string): OperatorCache {
  if (isOperatorCache(t)) return t;
  throw new TierError(
    'UNSUPPORTED',
    `${what} needs a directory cache (@tierkit/tier-fs) as the top tier, got '${t?.name ?? 'none'}'`,
    { retryable: false },
  );
}

/**
 * Records (once) and returns the sha256 of a cached object, for `verify`:
 * `seal` hashes the cached file; `record` stores one a fill computed while the
 * bytes arrived (nothing read), if the file is still the version `etag` names.
 */
export function asChecksumCache(t: Tier):
  | {
      seal(key: string, signal?: AbortSignal): Promise<string | undefined>;
      record(key: string, sha256: string, etag: string, signal?: AbortSignal): Promise<string | undefined>;
    }
  | undefined {
  if (!isOperatorCache(t)) return undefined;
  return {
    async record(key, sha256, etag, signal) {
      const stored = await t.setChecksum(key, { algorithm: 'sha256', value: sha256 }, etag, { signal });
      return stored ? sha256 : undefined;
    },
    async seal(key, signal) {
      const info = await t.entryInfo(key, { signal });
      if (!info) return undefined;
      if (info.metadata === 'ok' && info.checksum) return info.checksum.value;
      const c = await t.computeChecksum(key, { signal });
      if (!c) return undefined;
      await t.setChecksum(key, c.checksum, c.etag, { signal });
      return c.checksum.value;
    },
  };
}

// Moved to format.ts (shared with the sample apps through `@tierkit/warmer/progress`).
export { formatBytes, formatSeconds } from './format.js';
