/**
 * Purging: drop entries unused for a while, and down to a byte budget, never
 * pinned ones; optionally on a schedule (MLIS's checkUnusedCachedModelsEvery).
 */
import { formatDuration, parseDuration } from '@tierkit/policy-lru';
import { TierError } from '@tierkit/tier-core';
import type { OperatorCache } from './util.js';

export interface PurgeOptions {
  /** Drop entries not used for this long: `1d`, `1w`, `12h`, or milliseconds. */
  readonly purgeUnusedAfter?: string | number;
  /** Then drop least recently used entries until the cache holds at most this many bytes. */
  readonly maxBytes?: number;
  /** Say what would go, remove nothing (in-use entries a real run skips are listed too). */
  readonly dryRun?: boolean;
  /** The clock for a dry run's idle test (default Date.now; the cache's own clock for a real run). */
  readonly now?: number;
  readonly signal?: AbortSignal;
}

export interface PurgeResult {
  /** Keys dropped for being idle. */
  readonly idle: readonly string[];
  /** Keys dropped to get under `maxBytes`. */
  readonly overBudget: readonly string[];
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  readonly entriesAfter: number;
  /** Only planned: nothing was removed. */
  readonly dryRun?: boolean;
}

export async function purge(cache: OperatorCache, options: PurgeOptions): Promise<PurgeResult> {
  const idleMs = options.purgeUnusedAfter === undefined ? undefined : parseDuration(options.purgeUnusedAfter);
  const max = options.maxBytes;
  if (max !== undefined && !(Number.isFinite(max) && max >= 0)) {
    throw new TierError('INVALID_ARGUMENT', `maxBytes must be ≥ 0, got ${max}`, { retryable: false });
  }
  if (idleMs === undefined && max === undefined) {
    throw new TierError('INVALID_ARGUMENT', 'purge needs purgeUnusedAfter (e.g. 1w) and/or maxBytes', {
      retryable: false,
    });
  }
  await (cache as { ready?: Promise<void> }).ready;
  if (options.dryRun) return planPurge(cache, idleMs, max, options);
  const bytesBefore = cache.usedBytes;
  const idle = idleMs === undefined ? [] : await cache.purgeIdle(idleMs, { signal: options.signal });
  const overBudget = max === undefined ? [] : await cache.purgeToBytes(max, { signal: options.signal });
  return { idle, overBudget, bytesBefore, bytesAfter: cache.usedBytes, entriesAfter: cache.count };
}

/** What `purge` would remove: the same rules, read from the entries' last use and pins. */
async function planPurge(
  cache: OperatorCache,
  idleMs: number | undefined,
  max: number | undefined,
  options: PurgeOptions,
): Promise<PurgeResult> {
  const now = options.now ?? Date.now();
  const entries: { key: string; size: number; used: number }[] = [];
  for await (const m of cache.list('', { signal: options.signal })) {
    const info = await cache.entryInfo(m.key, { signal: options.signal });
    if (!info || info.pinned) continue;
    entries.push({ key: info.key, size: info.size, used: info.lastUsed ?? info.lastModified });
  }
  entries.sort((a, b) => a.used - b.used || (a.key < b.key ? -1 : 1));
  const bytesBefore = cache.usedBytes;
  let bytes = bytesBefore;
  const idle: string[] = [];
  const overBudget: string[] = [];
  const gone = new Set<string>();
  if (idleMs !== undefined) {
    for (const e of entries) {
      if (now - e.used < idleMs) continue;
      idle.push(e.key);
      gone.add(e.key);
      bytes -= e.size;
    }
  }
  if (max !== undefined) {
    for (const e of entries) {
      if (bytes <= max) break;
      if (gone.has(e.key)) continue;
      overBudget.push(e.key);
      gone.add(e.key);
      bytes -= e.size;
    }
  }
  return {
    idle,
    overBudget,
    bytesBefore,
    bytesAfter: bytes,
    entriesAfter: cache.count - gone.size,
    dryRun: true,
  };
}

export interface PurgeSchedule {
  /** Runs a purge now (also what the timer does). */
  runNow(): Promise<PurgeResult>;
  stop(): void;
}

export interface SchedulePurgeOptions extends PurgeOptions {
  /** How often to purge: `1d`, `1h`, or milliseconds. */
  readonly checkUnusedEvery: string | number;
  readonly onPurge?: (result: PurgeResult) => void;
  readonly onError?: (error: unknown) => void;
}

/** Purges every `checkUnusedEvery` until `stop()` (or the signal aborts). The timer does not keep the process alive. */
export function schedulePurge(cache: OperatorCache, options: SchedulePurgeOptions): PurgeSchedule {
  const every = parseDuration(options.checkUnusedEvery);
  if (every < 1000) {
    throw new TierError(
      'INVALID_ARGUMENT',
      `checkUnusedEvery must be at least 1s, got ${formatDuration(every)}`,
      {
        retryable: false,
      },
    );
  }
  // Validate the purge options now rather than at the first tick.
  if (options.purgeUnusedAfter !== undefined) parseDuration(options.purgeUnusedAfter);
  let running: Promise<PurgeResult> | undefined;
  const runNow = () => {
    running ??= purge(cache, options).finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => {
    runNow().then(
      (r) => options.onPurge?.(r),
      (e) => options.onError?.(e),
    );
  }, every);
  timer.unref();
  const stop = () => clearInterval(timer);
  options.signal?.addEventListener('abort', stop, { once: true });
  return { runNow, stop };
}
