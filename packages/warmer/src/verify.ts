/**
 * Verification: re-read cached entries, compare them with the checksum stored
 * when they were warmed and with the origin's size and ETag.
 */
import { matchesSource, type ObjectMeta, type Tier, throwIfAborted } from '@tierkit/tier-core';
import { errorInfo, type ItemError, type OperatorCache } from './util.js';

/**
 * - `ok`: the bytes match the stored checksum (and the origin, when checked);
 * - `unchecked`: no checksum was stored (nothing contradicts it; `seal` stores one);
 * - `corrupt`: the bytes do not match the stored checksum;
 * - `modified`: the file was changed outside tierkit after it was cached;
 * - `stale`: the origin's size or ETag differs (or the copy's origin is unknown);
 * - `gone`: the origin no longer has the object;
 * - `error`: it could not be checked (see `error`).
 */
export type VerifyStatus = 'ok' | 'unchecked' | 'corrupt' | 'modified' | 'stale' | 'gone' | 'error';

export const BAD_STATUSES: ReadonlySet<VerifyStatus> = new Set(['corrupt', 'modified', 'stale', 'gone']);

export interface VerifyOptions {
  /** Compare with the origin's size and ETag (omit to check local bytes only). */
  readonly origin?: Tier;
  /** Only these keys (default: every entry in the cache). */
  readonly keys?: readonly string[];
  /** Only keys with this prefix. */
  readonly prefix?: string;
  /** Delete bad entries (they are fetched again on the next read or warm). */
  readonly drop?: boolean;
  /** Store a checksum for entries that have none (after checking them against the origin). */
  readonly seal?: boolean;
  readonly signal?: AbortSignal;
  readonly onItem?: (item: VerifyItem) => void;
}

export interface VerifyItem {
  readonly key: string;
  readonly size: number;
  readonly status: VerifyStatus;
  readonly detail: string;
  readonly dropped?: boolean;
  readonly error?: ItemError;
}

export interface VerifySummary {
  readonly items: readonly VerifyItem[];
  readonly ok: number;
  readonly unchecked: number;
  readonly bad: number;
  readonly errors: number;
  readonly dropped: number;
  readonly bytesChecked: number;
}

/** Verifies the entries of a directory cache. */
export async function verify(cache: OperatorCache, options: VerifyOptions = {}): Promise<VerifySummary> {
  const signal = options.signal;
  const keys: string[] = [];
  if (options.keys) keys.push(...options.keys);
  else for await (const m of cache.list(options.prefix ?? '', { signal })) keys.push(m.key);
  const items: VerifyItem[] = [];
  let bytesChecked = 0;
  for (const key of keys) {
    throwIfAborted(signal);
    let item: VerifyItem;
    try {
      item = await verifyOne(cache, key, options);
      if (item.status === 'ok') bytesChecked += item.size;
    } catch (err) {
      item = { key, size: 0, status: 'error', detail: errorInfo(err).message, error: errorInfo(err) };
    }
    if (options.drop && BAD_STATUSES.has(item.status)) {
      await cache.delete(key, { signal });
      item = { ...item, dropped: true };
    }
    items.push(item);
    options.onItem?.(item);
  }
  const n = (f: (i: VerifyItem) => boolean) => items.filter(f).length;
  return {
    items,
    ok: n((i) => i.status === 'ok'),
    unchecked: n((i) => i.status === 'unchecked'),
    bad: n((i) => BAD_STATUSES.has(i.status)),
    errors: n((i) => i.status === 'error'),
    dropped: n((i) => i.dropped === true),
    bytesChecked,
  };
}

async function verifyOne(cache: OperatorCache, key: string, options: VerifyOptions): Promise<VerifyItem> {
  const signal = options.signal;
  const info = await cache.entryInfo(key, { signal });
  if (!info) return { key, size: 0, status: 'gone', detail: 'not in the cache' };
  const size = info.size;
  if (info.metadata === 'stale') return modified(key, size);
  if (options.origin) {
    let o: ObjectMeta | undefined;
    try {
      o = await options.origin.stat(key, { signal });
    } catch (err) {
      return {
        key,
        size,
        status: 'error',
        detail: `origin: ${errorInfo(err).message}`,
        error: errorInfo(err),
      };
    }
    if (!o)
      return { key, size, status: 'gone', detail: `the origin '${options.origin.name}' no longer has it` };
    if (!info.source) {
      return { key, size, status: 'stale', detail: 'the copy does not record which origin version it is' };
    }
    if (!matchesSource({ key, size, source: info.source }, o)) {
      return {
        key,
        size,
        status: 'stale',
        detail: `origin has size ${o.size} ETag ${o.etag ?? '-'}, the copy was made from size ${info.source.size} ETag ${info.source.etag ?? '-'}`,
      };
    }
  }
  const now = await cache.computeChecksum(key, { signal });
  if (!now) return { key, size, status: 'gone', detail: 'removed while being checked' };
  if (info.checksum) {
    if (info.checksum.value !== now.checksum.value) {
      return {
        key,
        size,
        status: 'corrupt',
        detail: `sha256 ${now.checksum.value.slice(0, 16)}… differs from the stored ${info.checksum.value.slice(0, 16)}…`,
      };
    }
    return { key, size, status: 'ok', detail: `sha256 ${now.checksum.value.slice(0, 16)}… matches` };
  }
  if (options.seal && now.etag === info.etag) {
    await cache.setChecksum(key, now.checksum, now.etag, { signal });
    return { key, size, status: 'ok', detail: 'no checksum was stored: sealed now' };
  }
  return { key, size, status: 'unchecked', detail: 'no stored checksum (warm or verify --seal records one)' };
}

function modified(key: string, size: number): VerifyItem {
  return {
    key,
    size,
    status: 'modified',
    detail: 'changed: the file was edited in place after it was cached (its bytes or timestamps differ)',
  };
}
