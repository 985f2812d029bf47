/**
 * Pre-warming: make every object a manifest names complete in the top cache of
 * a stack, fetching only what is missing or changed at the origin.
 */
import {
  isBlockCache,
  isTierError,
  matchesSource,
  type ObjectMeta,
  prestartDigestWorker,
  type StackTier,
  type Tier,
  TierError,
  throwIfAborted,
} from '@tierkit/tier-core';
import { globToRegExp, type Manifest, resolveManifest } from './manifest.js';
import { asChecksumCache, errorInfo, type ItemError, isOperatorCache } from './util.js';

export interface WarmOptions {
  /**
   * Objects fetched at once (default 8), plus as many small ones (one request's
   * worth, ≤ 8 MiB: configs, tokenizers) in a lane of their own, so they never
   * wait behind big ones. The requests in flight are bounded by the origin tier
   * across all of them (an S3 origin's `maxRequestsInFlight`), not per object.
   */
  readonly concurrency?: number;
  /**
   * Bound on the bytes of the objects being fetched at once (default 1 GiB). An
   * object bigger than the bound is fetched alone.
   */
  readonly maxBytesInFlight?: number;
  readonly signal?: AbortSignal;
  /** Called at most every `progressIntervalMs` while fetching, after each object, and at the end. */
  readonly onProgress?: (progress: WarmProgress) => void;
  readonly progressIntervalMs?: number;
  /** Record a sha256 of each cached object for `verify` (default true; costs one local read). */
  readonly checksum?: boolean;
  /** Only report what would be fetched. */
  readonly dryRun?: boolean;
  /** Told of each object when it is done. */
  readonly onItem?: (item: WarmItemResult) => void;
  /**
   * When the origin cannot be reached, keep what the cache holds instead of
   * failing: each named object already cached is reported `unvalidated` (kept,
   * not checked against the origin), each one not cached fails. Default false.
   */
  readonly staleIfError?: boolean;
}

export interface WarmProgress {
  /** Objects the manifest names. */
  readonly filesTotal: number;
  /** Of those, already fresh in the cache (skipped). */
  readonly filesSkipped: number;
  /** Objects to fetch, and how many are done / failed. */
  readonly filesToFetch: number;
  readonly filesDone: number;
  readonly filesFailed: number;
  /** Bytes to fetch, and fetched so far. */
  readonly bytesTotal: number;
  readonly bytesDone: number;
  readonly bytesPerSecond: number;
  /** Seconds left at the current rate; undefined until there is a rate. */
  readonly etaSeconds: number | undefined;
  readonly elapsedMs: number;
  /** Keys being fetched now. */
  readonly active: readonly string[];
}

/**
 * - `fresh`: present and still matching the origin's size and ETag — skipped;
 * - `fetched`: was not cached; `refetched`: was cached but changed at the origin
 *   (or of unknown provenance) and was fetched again;
 * - `unvalidated`: cached, kept as it is: the origin could not be reached to
 *   check it (`staleIfError`);
 * - `too-large`: larger than the cache's byte budget, so not cached (see
 *   `warning`); reads of it are served from the origin. Not a failure: the
 *   run stays `ok` (a cache being small is not an error), and `tooLarge` counts them;
 * - `failed`: see `error`; `planned`: a dry run would fetch it.
 */
export type WarmStatus =
  | 'fresh'
  | 'fetched'
  | 'refetched'
  | 'unvalidated'
  | 'too-large'
  | 'failed'
  | 'planned';

/**
 * Why a cached copy is fetched again: `changed` at the origin, `modified` (the
 * file was edited in place after it was cached), or `unknown-source` (no record
 * of which origin version it is).
 */
export type RefetchReason = 'changed' | 'modified' | 'unknown-source';

export interface WarmItemResult {
  readonly key: string;
  readonly size: number;
  readonly status: WarmStatus;
  /** Why a cached copy was fetched again. */
  readonly reason?: RefetchReason;
  readonly error?: ItemError;
  /** Why a `too-large` object was not cached. */
  readonly warning?: string;
  readonly sha256?: string;
}

export interface WarmSummary {
  readonly items: readonly WarmItemResult[];
  /** Keys the manifest names that the origin does not have. */
  readonly missing: readonly string[];
  /** Keys the manifest's prefixes and globs matched that its `exclude` patterns left out. */
  readonly excluded: readonly string[];
  readonly fresh: number;
  readonly fetched: number;
  readonly refetched: number;
  readonly unvalidated: number;
  /** Objects larger than the cache's budget: not cached, served from the origin (status `too-large`). */
  readonly tooLarge: number;
  readonly failed: number;
  /**
   * Bytes actually fetched from the origin: a fill resumed from a partial copy
   * counts only the blocks it still had to fetch.
   */
  readonly bytesFetched: number;
  /** Bytes of every object the manifest names. */
  readonly bytesTotal: number;
  readonly elapsedMs: number;
  readonly aborted: boolean;
  /** Why the origin could not be used, when the run kept unvalidated copies (`staleIfError`). */
  readonly originError?: ItemError;
  /** True when nothing failed and nothing was missing. */
  readonly ok: boolean;
}

/** A tier that counts the bytes it has served (see `instrumentTier`), for live byte progress. */
interface ByteCounting {
  readonly bytesRead: number;
}

function counterOf(t: Tier): ByteCounting | undefined {
  return typeof (t as Partial<ByteCounting>).bytesRead === 'number'
    ? (t as unknown as ByteCounting)
    : undefined;
}

function positive(name: string, v: number | undefined, dflt: number): number {
  const n = v ?? dflt;
  if (!Number.isFinite(n) || n < 1) {
    throw new TierError('INVALID_ARGUMENT', `${name} must be a positive number, got ${v}`, {
      retryable: false,
    });
  }
  return n;
}

/**
 * Warms `manifest` into the top tier of `stack`. Objects present and valid
 * against the origin are skipped; changed ones are fetched again; the summary
 * says which. Rejects only for problems with the whole run (the origin cannot be
 * listed, bad options); per-object failures are in the summary.
 */
export async function warm(
  stack: StackTier,
  manifest: Manifest,
  options: WarmOptions = {},
): Promise<WarmSummary> {
  const started = Date.now();
  const concurrency = Math.floor(positive('concurrency', options.concurrency, DEFAULT_CONCURRENCY));
  const maxInFlight = positive('maxBytesInFlight', options.maxBytesInFlight, 1024 ** 3);
  const signal = options.signal;
  const tiers = stack.tiers;
  if (!tiers || tiers.length < 2) {
    throw new TierError('INVALID_ARGUMENT', 'warm needs a stack with a cache tier above the origin', {
      retryable: false,
    });
  }
  const cache = tiers[0]!;
  const origin = tiers[tiers.length - 1]!;
  throwIfAborted(signal);
  let resolved: { items: ObjectMeta[]; missing: string[]; excluded?: string[] };
  let originError: ItemError | undefined;
  if (!options.dryRun) prestartWorkers(cache);
  try {
    resolved = await resolveManifest(origin, manifest, { signal });
  } catch (err) {
    if (!options.staleIfError || !unreachable(err)) throw err;
    originError = errorInfo(err);
    resolved = await resolveOffline(cache, manifest, signal);
  }
  const { items, missing } = resolved;
  const excluded = resolved.excluded ?? [];

  const results = new Map<string, WarmItemResult>();
  const toFetch: { meta: ObjectMeta; reason?: RefetchReason }[] = [];
  const sealer = options.checksum === false ? undefined : asChecksumCache(cache);
  const record = (r: WarmItemResult) => {
    results.set(r.key, r);
    options.onItem?.(r);
  };
  for (const meta of originError ? [] : items) {
    throwIfAborted(signal);
    let cached: ObjectMeta | undefined;
    try {
      cached = await cache.stat(meta.key, { signal });
    } catch (err) {
      if (isTierError(err, 'ABORTED')) throw err;
      record({ key: meta.key, size: meta.size, status: 'failed', error: errorInfo(err) });
      continue;
    }
    if (cached && matchesSource(cached, meta)) {
      let sha256: string | undefined;
      if (sealer && !options.dryRun) sha256 = await sealer.seal(meta.key, signal).catch(() => undefined);
      record({ key: meta.key, size: meta.size, status: 'fresh', ...(sha256 ? { sha256 } : {}) });
    } else {
      toFetch.push({ meta, ...(cached ? { reason: await whyRefetch(cache, cached, signal) } : {}) });
    }
  }

  if (originError) {
    for (const meta of items) record({ key: meta.key, size: meta.size, status: 'unvalidated' });
  }

  const bytesTotal = toFetch.reduce((n, f) => n + f.meta.size, 0);
  const counter = counterOf(origin);
  const counterStart = counter?.bytesRead ?? 0;
  const blockBytesStart = stack.stats().blockBytesFetched;
  const active = new Set<string>();
  let filesDone = 0;
  let filesFailed = 0;
  let completedBytes = 0;
  const progress = (): WarmProgress => {
    const live = counter ? Math.min(bytesTotal, counter.bytesRead - counterStart) : 0;
    const bytesDone = Math.max(completedBytes, live);
    const elapsedMs = Date.now() - started;
    const rate = elapsedMs > 0 ? (bytesDone / elapsedMs) * 1000 : 0;
    return {
      filesTotal: items.length,
      filesSkipped: items.length - toFetch.length,
      filesToFetch: toFetch.length,
      filesDone,
      filesFailed,
      bytesTotal,
      bytesDone,
      bytesPerSecond: rate,
      etaSeconds: rate > 0 ? (bytesTotal - bytesDone) / rate : undefined,
      elapsedMs,
      active: [...active],
    };
  };
  const emit = () => options.onProgress?.(progress());

  let aborted = false;
  if (options.dryRun) {
    for (const f of toFetch) {
      record({
        key: f.meta.key,
        size: f.meta.size,
        status: 'planned',
        ...(f.reason ? { reason: f.reason } : {}),
      });
    }
  } else if (toFetch.length > 0) {
    const timer = setInterval(emit, options.progressIntervalMs ?? 200);
    timer.unref();
    emit();
    try {
      await runLanes(toFetch, concurrency, maxInFlight, signal, async (f) => {
        const { meta, reason } = f;
        active.add(meta.key);
        try {
          const filled = await fetchOne(stack, cache, meta, signal, sealer !== undefined);
          let sha256: string | undefined;
          // The sha256 the fill computed as the bytes arrived; a fill that fetched nothing
          // (another process published the copy) leaves it to the sealer, which reads the file.
          if (sealer && filled) sha256 = await sealer.record(meta.key, filled.sha256, filled.etag, signal);
          if (sealer && !sha256) sha256 = await sealer.seal(meta.key, signal);
          completedBytes += meta.size;
          filesDone++;
          record({
            key: meta.key,
            size: meta.size,
            status: reason ? 'refetched' : 'fetched',
            ...(reason ? { reason } : {}),
            ...(sha256 ? { sha256 } : {}),
          });
        } catch (err) {
          if (err instanceof TooLarge) {
            filesDone++;
            completedBytes += meta.size;
            record({ key: meta.key, size: meta.size, status: 'too-large', warning: err.message });
            return;
          }
          if (isTierError(err, 'ABORTED') || signal?.aborted) aborted = true;
          filesFailed++;
          record({
            key: meta.key,
            size: meta.size,
            status: 'failed',
            ...(reason ? { reason } : {}),
            error: errorInfo(err),
          });
        } finally {
          active.delete(meta.key);
          emit();
        }
      });
    } finally {
      clearInterval(timer);
    }
    if (signal?.aborted) aborted = true;
  }
  emit();

  const list = items.map(
    (m) =>
      results.get(m.key) ?? {
        key: m.key,
        size: m.size,
        status: 'failed' as const,
        error: { code: 'ABORTED', message: 'not started: the run was aborted' },
      },
  );
  const count = (s: WarmStatus) => list.filter((r) => r.status === s).length;
  const failed = count('failed');
  // What came over the wire: the origin's own byte count where it keeps one, else
  // the stack's block fills (a resumed fill counts only the blocks it fetched),
  // else (a cache that holds only whole objects) the sizes of the objects fetched.
  const blockBytes = stack.stats().blockBytesFetched - blockBytesStart;
  const fetchedSizes = list
    .filter((r) => r.status === 'fetched' || r.status === 'refetched')
    .reduce((n, r) => n + r.size, 0);
  const bytesFetched = counter
    ? counter.bytesRead - counterStart
    : tiers.slice(0, -1).some(isBlockCache)
      ? blockBytes
      : fetchedSizes;
  return {
    items: list,
    missing,
    excluded,
    fresh: count('fresh'),
    fetched: count('fetched'),
    refetched: count('refetched'),
    unvalidated: count('unvalidated'),
    tooLarge: count('too-large'),
    failed,
    bytesFetched,
    bytesTotal: items.reduce((n, m) => n + m.size, 0),
    elapsedMs: Date.now() - started,
    aborted,
    ...(originError ? { originError } : {}),
    ok: failed === 0 && missing.length === 0 && !aborted,
  };
}

async function whyRefetch(
  cache: Tier,
  cached: ObjectMeta,
  signal: AbortSignal | undefined,
): Promise<RefetchReason> {
  if (cached.source) return 'changed';
  if (isOperatorCache(cache)) {
    const info = await cache.entryInfo(cached.key, { signal }).catch(() => undefined);
    if (info?.metadata === 'stale') return 'modified';
  }
  return 'unknown-source';
}

/** The origin could not be reached or used (not a bad request, an abort or a missing key). */
function unreachable(err: unknown): boolean {
  return isTierError(err, 'UNAVAILABLE') || isTierError(err, 'IO');
}

/**
 * The manifest resolved against the cache, for a run with the origin down:
 * what is cached is kept; keys not cached, and prefixes and globs under which
 * nothing is cached, are missing.
 */
async function resolveOffline(
  cache: Tier,
  manifest: Manifest,
  signal: AbortSignal | undefined,
): Promise<{ items: ObjectMeta[]; missing: string[] }> {
  const { items, missing } = await resolveManifest(cache, manifest, { signal });
  const matched = (p: string, glob: boolean) =>
    items.some((m) => (glob ? globToRegExp(p).test(m.key) : m.key.startsWith(p)));
  for (const p of manifest.prefixes ?? []) if (!matched(p, false)) missing.push(p);
  for (const g of manifest.globs ?? []) if (!matched(g, true)) missing.push(g);
  return { items, missing };
}

/**
 * Fills one object and checks that the cache kept it (a fill that did not fit is
 * only a warning in a stack). With `sha256`, the fill hashes the bytes as they
 * arrive (on the digest worker): returned with the cached copy's ETag.
 */
async function fetchOne(
  stack: StackTier,
  cache: Tier,
  meta: ObjectMeta,
  signal: AbortSignal | undefined,
  sha256: boolean,
): Promise<{ sha256: string; etag: string } | undefined> {
  const got = await stack.fill(meta.key, { signal, ...(sha256 ? { digests: ['sha256'] as const } : {}) });
  if (!got) {
    throw new TierError('NOT_FOUND', `'${meta.key}' disappeared from the origin while warming`, {
      key: meta.key,
      retryable: false,
    });
  }
  // Larger than the cache's budget: not cached, and not a failure (reads go to the origin).
  if (got.notCached?.reason === 'too-large') {
    throw new TooLarge(`too large for the cache '${got.notCached.tier}': ${got.notCached.message}`);
  }
  const cached = await cache.stat(meta.key, { signal });
  if (!cached) {
    throw new TierError(
      'CAPACITY',
      `the cache did not keep '${meta.key}' (${meta.size} bytes): it may not fit — raise the cache's ` +
        'maxBytes, lower minFreeRatio, purge or unpin entries',
      { key: meta.key, retryable: false },
    );
  }
  const hashed = got.digests?.find((d) => d.algorithm === 'sha256' && d.parts === undefined)?.value;
  return hashed && cached.etag ? { sha256: hashed, etag: cached.etag } : undefined;
}

/** A fill the cache could not keep because the object exceeds its budget (see WarmStatus `too-large`). */
class TooLarge extends Error {}

/**
 * Starts the cache tier's worker pool (an fs tier's `workerPool`: threads that
 * write and checksum blocks) and tier-core's digest thread, once the origin's
 * first request is on its way.
 * In a fresh process the pool's threads take about half a second to start on
 * a small machine; started at the first block write, as they otherwise are,
 * every block of the first fill waits for them (bench/README.md, whole-process).
 */
function prestartWorkers(cache: Tier): void {
  const starter = cache as { readonly workerPool?: unknown };
  setImmediate(() => {
    try {
      // The digest thread too: fills check (and record) digests as blocks arrive.
      prestartDigestWorker();
      if ('workerPool' in cache) void starter.workerPool;
    } catch {
      // A pool that cannot start is the fill's problem to report, not this hint's.
    }
  });
}

/**
 * Objects open at once by default. Enough that a model of mid-sized shards
 * (a fill of an object under one span keeps two requests in flight) reaches
 * the origin's request budget, which is what bounds the load on the server.
 */
const DEFAULT_CONCURRENCY = 8;

/** Objects up to one request's worth (an S3 part) go in the small lane. */
const SMALL_OBJECT_BYTES = 8 * 1024 * 1024;

/**
 * Runs `fn` over `items` in two lanes at once: small objects (configs,
 * tokenizers) and the rest, each lane `concurrency` wide and in the manifest's
 * order, so a small file never waits for a big one to finish. The big lane
 * also keeps the sizes of those running within `maxBytes`.
 */
async function runLanes<T extends { meta: ObjectMeta }>(
  items: readonly T[],
  concurrency: number,
  maxBytes: number,
  signal: AbortSignal | undefined,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  const small = items.filter((i) => i.meta.size <= SMALL_OBJECT_BYTES);
  const big = items.filter((i) => i.meta.size > SMALL_OBJECT_BYTES);
  await Promise.all([
    runBounded(small, concurrency, Number.POSITIVE_INFINITY, signal, fn),
    runBounded(big, concurrency, maxBytes, signal, fn),
  ]);
}

/**
 * Runs `fn` over `items` with at most `concurrency` at once and the sizes of
 * those running within `maxBytes` (one always runs, however big). Stops
 * starting new ones when `signal` aborts.
 */
async function runBounded<T extends { meta: ObjectMeta }>(
  items: readonly T[],
  concurrency: number,
  maxBytes: number,
  signal: AbortSignal | undefined,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let running = 0;
  let bytes = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (
        !signal?.aborted &&
        next < items.length &&
        running < concurrency &&
        (running === 0 || bytes + items[next]!.meta.size <= maxBytes)
      ) {
        const item = items[next++]!;
        running++;
        bytes += item.meta.size;
        void fn(item).finally(() => {
          running--;
          bytes -= item.meta.size;
          pump();
        });
      }
      if (running === 0 && (next >= items.length || signal?.aborted)) resolve();
    };
    pump();
  });
}
