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

/** Records (once) and returns the sha256 of a cached object, for `verify`. */
export function asChecksumCache(
  t: Tier,
): { seal(key: string, signal?: AbortSignal): Promise<string | undefined> } | undefined {
  if (!isOperatorCache(t)) return undefined;
  return {
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

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/**
 * `512 B`, `1.5 KiB`, `45 B` (a rate: whole bytes), `12.0 GiB`: at most one
 * decimal, whatever the input (rates and averages are fractions).
 */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '-';
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  // Rounding can carry into the next unit: 1023.96 KiB prints as 1.0 MiB, not 1024.0 KiB.
  if (i > 0 && Number(v.toFixed(1)) >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const sign = n < 0 ? '-' : '';
  return i === 0 ? `${sign}${Math.round(v)} B` : `${sign}${v.toFixed(1)} ${UNITS[i]}`;
}

/** `1h02m`, `3m05s`, `12s`. */
export function formatSeconds(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '--';
  const t = Math.max(0, Math.round(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}
