/**
 * An LMCache GDS cache directory managed in place: list, stat, verify and purge
 * it by byte budget and age while LMCache keeps writing to it (LMCache's GDS
 * backend never evicts). Works on the files LMCache writes, by the paths a scan
 * found, never by recomputed ones.
 *
 * Safety while LMCache writes (data renamed into place first, its .metadata after,
 * both from `.tmp<hex>` names):
 * - temporary files are never touched: a file being written is never removed;
 * - an entry goes .metadata first, then its data file, which is first renamed to a
 *   private name and checked to be the file the scan saw (same inode); a newer file
 *   that arrived meanwhile is put back (link, which never replaces) and its
 *   .metadata rewritten from its header if it went with ours;
 * - a .metadata whose data is gone is removed; a data file whose .metadata has not
 *   appeared within `graceMs` gets one written from its own header;
 * - reports and metrics count only what was actually unlinked.
 */
import { randomBytes } from 'node:crypto';
import { link, lstat, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  decodeGdsHeader,
  GDS_DATA_SUFFIX,
  GDS_HEADER_SIZE,
  GDS_METADATA_SUFFIX,
  GDS_TEMP_PATTERN,
  type GdsHeader,
  gdsHeaderDataBytes,
  type LmcacheConfig,
  lmcacheGdsSettings,
  openToInspect,
} from '@tierkit/lmcache';
import { TierError, throwIfAborted } from '@tierkit/tier-core';
import { canonicalKey, LmcacheGdsLayout, walkTwoLevels, writeMetadataFile } from './lmcache-layout.js';

/** What a purge renames an entry's file to before unlinking it (a killed purger leaves it). */
const PURGE_TRASH_INFIX = '.tierkit-purge-';
const PURGE_TRASH = /\.tierkit-purge-[0-9a-f]{8}$/;

export interface LmcacheDirOptions {
  /** The gds_path directories (a comma-separated string or a list). */
  readonly paths: readonly string[];
  /** `.kvcache.safetensors` (default) or `.weka1`. */
  readonly dataSuffix?: string;
  /** How long a data file may wait for its .metadata before tierkit writes it (default 60 s). */
  readonly graceMs?: number;
  /** The clock (tests); default Date.now. */
  readonly now?: () => number;
}

/** One entry: a data file and/or its .metadata, as found on disk. */
export interface LmcacheDirEntry {
  readonly key: string;
  readonly root: string;
  readonly dataPath: string;
  readonly metadataPath: string;
  /** Bytes of the data file (0 when absent). */
  readonly dataBytes: number;
  readonly metadataBytes: number;
  readonly hasData: boolean;
  readonly hasMetadata: boolean;
  /** Last use: the later of the data file's atime and mtime (ms). */
  readonly lastUsedMs: number;
  /** The data file's inode (to check it is still the same file when removing it). */
  readonly ino?: bigint;
}

export interface LmcacheDirProblem {
  readonly key: string;
  readonly path: string;
  readonly problem: string;
}

export interface PurgeOptions {
  /** Keep the directory (or, with `prefix`, that prefix's entries) at or under this many bytes (data + .metadata files). */
  readonly maxBytes?: number;
  /** Remove entries not used for this long (ms). */
  readonly olderThanMs?: number;
  /** Only entries whose key starts with it: their bytes are what maxBytes bounds, and only they are repaired. */
  readonly prefix?: string;
  /** Report what would go, remove nothing. */
  readonly dryRun?: boolean;
  readonly signal?: AbortSignal;
}

export interface PurgeReport {
  /** Entries actually removed (or, in a dry run, that would be). */
  readonly removed: readonly { key: string; bytes: number }[];
  readonly bytesBefore: number;
  readonly bytesAfter: number;
  readonly entriesAfter: number;
  /** Entries chosen but left: replaced by LMCache meanwhile, or already gone. */
  readonly skipped: number;
  /** .metadata files written for data files that had none past the grace period. */
  readonly healed: number;
  /**
   * Files crashed writers left, older than the grace period (LMCache's `.tmp<8 hex>`
   * temporaries, a killed purger's renamed-away files): removed (a dry run only counts
   * them). Only a whole-directory purge (no prefix) looks for them.
   */
  readonly leftovers: { readonly files: number; readonly bytes: number };
}

/** Counters and gauges of a directory, as Prometheus exposes them. */
export interface LmcacheDirMetrics {
  bytes: number;
  entries: number;
  evictedEntries: number;
  evictedBytes: number;
  purgeRuns: number;
  purgeErrors: number;
  healedMetadata: number;
}

function splitList(p: string | readonly string[]): string[] {
  return (typeof p === 'string' ? p.split(',') : [...p]).map((s) => s.trim()).filter(Boolean);
}

export class LmcacheGdsDirectory {
  readonly layout: LmcacheGdsLayout;
  readonly graceMs: number;
  readonly metrics: LmcacheDirMetrics = {
    bytes: 0,
    entries: 0,
    evictedEntries: 0,
    evictedBytes: 0,
    purgeRuns: 0,
    purgeErrors: 0,
    healedMetadata: 0,
  };
  #now: () => number;

  constructor(options: LmcacheDirOptions) {
    const paths = splitList(options.paths);
    if (paths.length === 0) {
      throw new TierError('INVALID_ARGUMENT', 'an LMCache GDS directory needs at least one path', {
        retryable: false,
      });
    }
    this.layout = new LmcacheGdsLayout({ paths, dataSuffix: options.dataSuffix ?? GDS_DATA_SUFFIX });
    this.graceMs = options.graceMs ?? 60_000;
    if (!(this.graceMs >= 0))
      throw new TierError('INVALID_ARGUMENT', `graceMs must be >= 0, got ${this.graceMs}`, {
        retryable: false,
      });
    this.#now = options.now ?? Date.now;
  }

  /** The directory an LMCache configuration names (gds_path: every path). */
  static fromLmcacheConfig(
    config: LmcacheConfig,
    options: Omit<LmcacheDirOptions, 'paths'> = {},
  ): LmcacheGdsDirectory {
    return new LmcacheGdsDirectory({ ...options, paths: lmcacheGdsSettings(config).paths });
  }

  /** Every entry in every path (complete or not), in no particular order. Temporary files are left out. */
  async entries(signal?: AbortSignal): Promise<LmcacheDirEntry[]> {
    const byData = new Map<string, { key: string; root: string; data?: boolean; meta?: boolean }>();
    const metaSuffix = this.layout.dataSuffix + GDS_METADATA_SUFFIX;
    for (const root of this.layout.roots) {
      for await (const { dir, name } of walkTwoLevels(root)) {
        throwIfAborted(signal);
        if (GDS_TEMP_PATTERN.test(name)) continue;
        const isMeta = name.endsWith(metaSuffix);
        const dataName = isMeta ? name.slice(0, -GDS_METADATA_SUFFIX.length) : name;
        const dataPath = join(dir, dataName);
        const key = this.layout.keyAt(root, dataPath, dataName);
        if (key === undefined) continue;
        const e = byData.get(dataPath) ?? { key, root };
        if (isMeta) e.meta = true;
        else e.data = true;
        byData.set(dataPath, e);
      }
    }
    const out: LmcacheDirEntry[] = [];
    for (const [dataPath, e] of byData) {
      const metadataPath = dataPath + GDS_METADATA_SUFFIX;
      const ds = e.data ? await stat(dataPath, { bigint: true }).catch(() => undefined) : undefined;
      const ms = e.meta ? await stat(metadataPath).catch(() => undefined) : undefined;
      if (!ds && !ms) continue;
      out.push({
        key: e.key,
        root: e.root,
        dataPath,
        metadataPath,
        dataBytes: ds ? Number(ds.size) : 0,
        metadataBytes: ms ? ms.size : 0,
        hasData: !!ds,
        hasMetadata: !!ms,
        lastUsedMs: ds ? Math.max(Number(ds.atimeMs), Number(ds.mtimeMs)) : ms!.mtimeMs,
        ...(ds ? { ino: ds.ino } : {}),
      });
    }
    const bytes = out.reduce((n, e) => n + e.dataBytes + e.metadataBytes, 0);
    this.metrics.bytes = bytes;
    this.metrics.entries = out.filter((e) => e.hasData).length;
    return out;
  }

  /** One key's entry (canonical key or as LMCache prints it), or undefined. */
  async stat(key: string): Promise<(LmcacheDirEntry & { header?: GdsHeader }) | undefined> {
    for (const dataPath of this.layout.paths(canonicalKey(key))) {
      const metadataPath = dataPath + GDS_METADATA_SUFFIX;
      const ds = await stat(dataPath, { bigint: true }).catch(() => undefined);
      const ms = await stat(metadataPath).catch(() => undefined);
      if (!ds && !ms) continue;
      const header = ds ? await readHeader(dataPath) : undefined;
      return {
        key: canonicalKey(key),
        root: this.layout.roots.find((r) => dataPath.startsWith(`${r}/`)) ?? this.layout.roots[0],
        dataPath,
        metadataPath,
        dataBytes: ds ? Number(ds.size) : 0,
        metadataBytes: ms ? ms.size : 0,
        hasData: !!ds,
        hasMetadata: !!ms,
        lastUsedMs: ds ? Math.max(Number(ds.atimeMs), Number(ds.mtimeMs)) : ms!.mtimeMs,
        ...(ds ? { ino: ds.ino } : {}),
        ...(header ? { header } : {}),
      };
    }
    return undefined;
  }

  /** What LMCache would trip over: torn, unreadable or half entries, and leftover temporary files. */
  async verify(prefix = '', signal?: AbortSignal): Promise<LmcacheDirProblem[]> {
    const problems: LmcacheDirProblem[] = [];
    if (prefix === '') {
      for (const f of await this.leftovers(signal)) {
        if (f.ageMs < this.graceMs) continue;
        problems.push({
          key: '',
          path: f.path,
          problem: `a temporary file ${Math.round(f.ageMs / 1000)} s old that no writer finished (purge removes it)`,
        });
      }
    }
    for (const e of await this.entries(signal)) {
      if (!e.key.startsWith(prefix)) continue;
      if (!e.hasData) {
        problems.push({
          key: e.key,
          path: e.metadataPath,
          problem: '.metadata without its data file (LMCache will fail to load it)',
        });
        continue;
      }
      const header = await readHeader(e.dataPath);
      if (!header) {
        problems.push({ key: e.key, path: e.dataPath, problem: 'no valid LMCache header' });
        continue;
      }
      if (header.unloadable) problems.push({ key: e.key, path: e.dataPath, problem: header.unloadable });
      const want = GDS_HEADER_SIZE + gdsHeaderDataBytes(header);
      if (e.dataBytes < want)
        problems.push({
          key: e.key,
          path: e.dataPath,
          problem: `truncated: ${e.dataBytes} of ${want} bytes`,
        });
      if (!e.hasMetadata) {
        problems.push({
          key: e.key,
          path: e.dataPath,
          problem: 'missing .metadata (LMCache will not load it)',
        });
      } else {
        const companion = await readFile(e.metadataPath).catch(() => undefined);
        const head = await readPrefix(e.dataPath, GDS_HEADER_SIZE);
        if (!companion || !head || !companion.equals(head)) {
          problems.push({
            key: e.key,
            path: e.metadataPath,
            problem: '.metadata differs from the data header',
          });
        }
      }
    }
    return problems;
  }

  /**
   * Removes least recently used entries until the directory holds at most
   * `maxBytes`, and entries idle for `olderThanMs`. Half entries are repaired or
   * removed first (see the file comment).
   */
  async purge(options: PurgeOptions = {}): Promise<PurgeReport> {
    try {
      return await this.#purge(options);
    } catch (err) {
      this.metrics.purgeErrors++;
      throw err;
    }
  }

  async #purge(options: PurgeOptions): Promise<PurgeReport> {
    if (options.maxBytes !== undefined && !(options.maxBytes >= 0)) {
      throw new TierError('INVALID_ARGUMENT', `maxBytes must be >= 0, got ${options.maxBytes}`, {
        retryable: false,
      });
    }
    if (options.olderThanMs !== undefined && !(options.olderThanMs >= 0)) {
      throw new TierError('INVALID_ARGUMENT', `olderThanMs must be >= 0, got ${options.olderThanMs}`, {
        retryable: false,
      });
    }
    const prefix = options.prefix ?? '';
    // With a prefix, everything is about the prefix's entries: their bytes, their repairs.
    const inScope = (e: LmcacheDirEntry) => e.key.startsWith(prefix);
    const entries = (await this.entries(options.signal)).filter(inScope);
    const now = this.#now();
    const bytesBefore = entries.reduce((n, e) => n + e.dataBytes + e.metadataBytes, 0);
    let total = bytesBefore;
    let skipped = 0;
    let healed = 0;
    const removed: { key: string; bytes: number }[] = [];
    const live: LmcacheDirEntry[] = [];
    for (const e of entries) {
      if (!e.hasData) {
        // A .metadata whose data is gone: LMCache would list an entry it cannot load.
        if (!options.dryRun) {
          if (await this.#dropOrphanMetadata(e)) total -= e.metadataBytes;
        } else total -= e.metadataBytes;
        continue;
      }
      if (!e.hasMetadata && now - e.lastUsedMs >= this.graceMs && !options.dryRun) {
        if (await this.#heal(e.dataPath)) healed++;
      }
      live.push(e);
    }
    live.sort((a, b) => a.lastUsedMs - b.lastUsedMs);
    for (const e of live) {
      throwIfAborted(options.signal);
      const idle = options.olderThanMs !== undefined && now - e.lastUsedMs >= options.olderThanMs;
      const over = options.maxBytes !== undefined && total > options.maxBytes;
      if (!idle && !over) continue;
      // A data file still waiting for its .metadata is being published: not a victim yet.
      if (!e.hasMetadata && now - e.lastUsedMs < this.graceMs) continue;
      if (!options.dryRun) await this.beforeRemove(e);
      const bytes = options.dryRun ? e.dataBytes + e.metadataBytes : await this.#removeEntry(e);
      if (bytes === undefined) {
        skipped++;
        continue;
      }
      total -= e.dataBytes + e.metadataBytes;
      removed.push({ key: e.key, bytes });
    }
    if (!options.dryRun) {
      this.metrics.evictedEntries += removed.length;
      this.metrics.evictedBytes += removed.reduce((n, r) => n + r.bytes, 0);
      this.metrics.healedMetadata += healed;
    }
    this.metrics.purgeRuns++;
    // A temporary untouched for the grace period has no writer any more: its bytes are outside any budget.
    const leftovers = { files: 0, bytes: 0 };
    if (prefix === '') {
      for (const f of await this.leftovers(options.signal)) {
        if (f.ageMs < this.graceMs) continue;
        if (
          !options.dryRun &&
          !(await unlink(f.path).then(
            () => true,
            () => false,
          ))
        )
          continue;
        leftovers.files++;
        leftovers.bytes += f.bytes;
      }
    }
    const after = options.dryRun ? undefined : (await this.entries(options.signal)).filter(inScope);
    const bytesAfter = after ? after.reduce((n, e) => n + e.dataBytes + e.metadataBytes, 0) : total;
    return {
      removed,
      bytesBefore,
      bytesAfter,
      entriesAfter: after ? after.filter((e) => e.hasData).length : live.length - removed.length,
      skipped,
      healed,
      leftovers,
    };
  }

  /** Files that are no entry: LMCache's temporaries and this purger's trash, with their size and age. */
  async leftovers(signal?: AbortSignal): Promise<{ path: string; bytes: number; ageMs: number }[]> {
    const out: { path: string; bytes: number; ageMs: number }[] = [];
    const now = this.#now();
    for (const root of this.layout.roots) {
      for await (const { dir, name } of walkTwoLevels(root)) {
        throwIfAborted(signal);
        if (!GDS_TEMP_PATTERN.test(name) && !PURGE_TRASH.test(name)) continue;
        const path = join(dir, name);
        const st = await lstat(path).catch(() => undefined);
        if (st?.isFile()) out.push({ path, bytes: st.size, ageMs: now - st.mtimeMs });
      }
    }
    return out;
  }

  /** Called just before an entry is removed (a subclass can observe or instrument purges). */
  protected async beforeRemove(_entry: LmcacheDirEntry): Promise<void> {}

  /** Removes one entry; the bytes unlinked, or undefined when it was left (replaced or gone). */
  async #removeEntry(e: LmcacheDirEntry): Promise<number | undefined> {
    let bytes = 0;
    let metaGone = false;
    try {
      await unlink(e.metadataPath);
      metaGone = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const trash = `${e.dataPath}${PURGE_TRASH_INFIX}${randomBytes(4).toString('hex')}`;
    try {
      await rename(e.dataPath, trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return metaGone ? e.metadataBytes : undefined; // the data went meanwhile: only the .metadata was ours
    }
    const moved = await lstat(trash, { bigint: true });
    if (e.ino !== undefined && moved.ino !== e.ino) {
      // LMCache replaced the file after the scan: put the new one back, never over a newer still.
      await link(trash, e.dataPath).catch((err) => {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      });
      await unlink(trash);
      if (metaGone) await this.#heal(e.dataPath);
      return undefined;
    }
    await unlink(trash);
    bytes += Number(moved.size) + (metaGone ? e.metadataBytes : 0);
    return bytes;
  }

  async #dropOrphanMetadata(e: LmcacheDirEntry): Promise<boolean> {
    // Re-check: the data may have arrived since the scan.
    if (
      await lstat(e.dataPath).then(
        () => true,
        () => false,
      )
    )
      return false;
    try {
      await unlink(e.metadataPath);
    } catch {
      return false;
    }
    if (
      await lstat(e.dataPath).then(
        () => true,
        () => false,
      )
    )
      await this.#heal(e.dataPath);
    return true;
  }

  /** Writes the .metadata of a data file from its own header (it is exactly those 4096 bytes). */
  async #heal(dataPath: string): Promise<boolean> {
    if (
      await lstat(dataPath + GDS_METADATA_SUFFIX).then(
        () => true,
        () => false,
      )
    )
      return false;
    const head = await readPrefix(dataPath, GDS_HEADER_SIZE);
    if (!head || !decodeGdsHeader(head)) return false;
    await writeMetadataFile(dataPath, head);
    return true;
  }

  /** The metrics in Prometheus' text format. */
  prometheus(prefix = 'tierkit_lmcache_gds'): string {
    const m = this.metrics;
    const line = (name: string, type: 'gauge' | 'counter', help: string, v: number) =>
      `# HELP ${prefix}_${name} ${help}\n# TYPE ${prefix}_${name} ${type}\n${prefix}_${name} ${v}\n`;
    return (
      line(
        'bytes',
        'gauge',
        'Bytes of data and .metadata files in the directory at the last scan.',
        m.bytes,
      ) +
      line('entries', 'gauge', 'Entries with a data file at the last scan.', m.entries) +
      line('evictions_total', 'counter', 'Entries removed by purges.', m.evictedEntries) +
      line('evicted_bytes_total', 'counter', 'Bytes unlinked by purges.', m.evictedBytes) +
      line('purge_runs_total', 'counter', 'Purge runs.', m.purgeRuns) +
      line('purge_errors_total', 'counter', 'Purge runs that failed.', m.purgeErrors) +
      line(
        'healed_metadata_total',
        'counter',
        '.metadata files written for data files that had none.',
        m.healedMetadata,
      )
    );
  }
}

async function readPrefix(path: string, n: number): Promise<Buffer | undefined> {
  // Looking at a header is no use of the entry: its atime is the purge's last use.
  const fh = await openToInspect(path).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return bytesRead === n ? buf : undefined;
  } finally {
    await fh.close();
  }
}

async function readHeader(path: string): Promise<GdsHeader | undefined> {
  const head = await readPrefix(path, GDS_HEADER_SIZE);
  return head ? decodeGdsHeader(head) : undefined;
}

export interface PurgerOptions extends PurgeOptions {
  /** Time between runs (ms). */
  readonly everyMs: number;
  /** Each run's report. */
  readonly onReport?: (report: PurgeReport) => void;
  /** A failed run (the loop goes on). */
  readonly onError?: (err: unknown) => void;
}

export interface Purger {
  /** Runs once now (waits for a run in progress first). */
  runOnce(): Promise<PurgeReport>;
  /** Stops the loop after the run in progress. */
  stop(): Promise<void>;
}

/** A long-lived purge loop (a sidecar next to LMCache): one run at a time, every `everyMs`. */
export function startLmcachePurger(dir: LmcacheGdsDirectory, options: PurgerOptions): Purger {
  if (!(options.everyMs > 0))
    throw new TierError('INVALID_ARGUMENT', `everyMs must be > 0, got ${options.everyMs}`, {
      retryable: false,
    });
  let running: Promise<PurgeReport | undefined> = Promise.resolve(undefined);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const { everyMs: _every, onReport, onError, ...purge } = options;
  const run = (): Promise<PurgeReport | undefined> => {
    running = running
      .catch(() => undefined)
      .then(async () => {
        const report = await dir.purge(purge);
        onReport?.(report);
        return report;
      });
    return running;
  };
  const tick = () => {
    if (stopped) return;
    run()
      .catch((err) => onError?.(err))
      .finally(() => {
        if (!stopped) timer = setTimeout(tick, options.everyMs);
      });
  };
  timer = setTimeout(tick, 0);
  return {
    async runOnce() {
      const r = await run();
      return r!;
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running.catch(() => undefined);
    },
  };
}
