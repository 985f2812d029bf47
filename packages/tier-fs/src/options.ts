/**
 * FsTier's options: what each one means, their defaults, and the URL form
 * (`file:///var/cache/models?maxBytes=200GiB`). Checked once, at construction.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ReadPool } from '@tierkit/pool';
import type { Policy } from '@tierkit/tier-core';
import { TierError } from '@tierkit/tier-core';
import { VERIFY_MODES, type VerifyMode } from './verify.js';

const MiB = 1024 * 1024;

export type DescriptorCheck = 'inline' | 'offload' | 'none';

export interface FsTierOptions {
  /** The directory. Created (with parents) unless `create: false`. */
  readonly root: string;
  readonly name?: string;
  /** Upper bound on the bytes of all objects under the root; the policy's victims are evicted to stay under it. */
  readonly maxBytes?: number;
  /** Keep at least this fraction (0–1) of the filesystem free (fs.statfs), evicting to get there. */
  readonly minFreeRatio?: number;
  /** Eviction policy (default: `LruPolicy` from @tierkit/policy-lru). Not serializable: pass it in code. */
  readonly policy?: Policy;
  /** Called after an entry was evicted to make room or purged as idle. */
  readonly onEvict?: (key: string, size: number) => void;
  /** Create the root if missing (default true; never with `readOnly`). */
  readonly create?: boolean;
  /**
   * A directory served as an origin (a model share on an NFS or read-only
   * mount): nothing is ever written under the root — no `.tierkit/` folder, no
   * journal, no temp files — and opening does not walk the tree (`stat`, `read`
   * and `list` look at the disk when asked). `write`, `delete`, pins, purges,
   * locks and partial copies are refused with UNSUPPORTED. Works on a
   * read-only mount.
   */
  readonly readOnly?: boolean;
  /** fsync data, then the directory, on every publish (default true). Off only for scratch caches. */
  readonly fsync?: boolean;
  /** Reads at least this long are split into parallel positioned reads (default 8 MiB). */
  readonly parallelReadThreshold?: number;
  /** Size of each parallel read (default 4 MiB). */
  readonly readChunkSize?: number;
  /** Parallel positioned reads per large read (default 4). */
  readonly readConcurrency?: number;
  /**
   * The worker pool for large reads and checksums: `true` (default) is the
   * process's shared pool (@tierkit/pool, started on first use), `false` none,
   * or a pool of your own.
   */
  readonly pool?: boolean | ReadPool;
  /**
   * Reads at least this long into SharedArrayBuffer-backed memory go to the
   * worker pool (`read()` allocates such memory for them). Default: never
   * (Infinity) — on the machines measured the direct path was as fast or faster;
   * see bench/results/pooled-read.md and set it from your own run.
   */
  readonly poolReadThreshold?: number;
  /** Descriptors kept open for hot reads (default 64; 0 turns the cache off). See fd-cache.ts. */
  readonly openFiles?: number;
  /** A cached descriptor unused this long is closed (default 5 s). */
  readonly openFileIdleMs?: number;
  /**
   * How a read through a cached descriptor checks that the key's path still
   * names that file: `'inline'`, an lstat on the calling thread (about 2 µs on
   * a local disk), or `'offload'`, an lstat on libuv's threads alongside the
   * read (no blocking, but a thread round trip: about 15–30 µs). Default: inline
   * on local filesystems (ext4, xfs, btrfs, tmpfs, overlay, f2fs, zfs), offload
   * elsewhere (NFS, SMB, FUSE), where one lstat can wait on the network.
   *
   * `'none'` is for content-addressed data only (KV-cache chunks keyed by their
   * hash), where a key's bytes never change: a cached descriptor is trusted
   * until this process drops it, so a file another process removed or replaced
   * may still be read through it until the descriptor idles out (`openFileIdleMs`).
   */
  readonly descriptorCheck?: DescriptorCheck;
  /**
   * Write the blocks of block-granular fills (partial copies) with O_DIRECT,
   * past the page cache. Putting gigabytes of new pages into the page cache
   * costs more CPU than the transfer itself on many machines (here 2.6 s of
   * CPU per GiB, against 0.03 s direct: bench/results/s3-cold-fill.md), and a
   * model loaded once should not push everything else out of memory. The
   * first read after the fill then comes from the disk. Default: on for ext4,
   * xfs, btrfs and f2fs; off elsewhere (tmpfs has no O_DIRECT, NFS makes each
   * direct write a synchronous round trip). Decided by fills in fresh processes
   * on ext4, xfs and tmpfs: the same rate, 1–1.4 s less CPU per GiB on disk
   * filesystems (bench/README.md, "directFill's default"). Blocks that are not 4 KiB-aligned
   * (the last one, or a block size that is not a multiple) are written buffered.
   */
  readonly directFill?: boolean;
  /**
   * Reads of at most this many bytes first copy what the page cache already
   * holds, on the calling thread (preadv2 with RWF_NOWAIT, from
   * @tierkit/native). That skips the thread-pool round trip, about a quarter of
   * a hot 2 MiB read here (bench/results/kv.md). Whatever is not cached is read
   * on libuv's threads as before, so the calling thread never waits for the
   * disk; it does block for the copy (about 40 µs per MiB here), as a memory
   * tier's read does, and at most 8 MiB are copied inline per event-loop turn. Default 4 MiB on local filesystems where the addon is
   * built; 0 (off) elsewhere, and from the first time the kernel refuses
   * (tmpfs, NFS and FUSE do).
   */
  readonly inlineReadMax?: number;
  /**
   * Lease of a cross-process lock (default 30 s): holders renew it every quarter of it; another
   * process takes it over only after a whole lease without renewal, on its own clock.
   */
  readonly lockLeaseMs?: number;
  /** First wait between attempts on a held lock, doubling to 250 ms (default 10 ms). */
  readonly lockPollMs?: number;
  /** How often last-use times are appended to the journal (default 30 s; also on close). */
  readonly flushIntervalMs?: number;
  /** Temp files of other hosts older than this are removed at open (default 1 h). */
  readonly staleTempMs?: number;
  /**
   * How reads check the bytes they serve against the CRC32C recorded per 1 MiB
   * block when the entry was cached (see verify.ts): `'always'` (every block a
   * read touches, every time), `'first'` (each block the first time this tier
   * instance serves it), `'never'`. A block that does not match drops the entry
   * and fails the read with INTEGRITY, which a stack answers from the origin.
   * Default `'first'`: repeat reads cost nothing (bench/results/warm-read.md).
   */
  readonly verify?: VerifyMode;
  /** Mode of published files (default 0o644) and folders (default 0o755). */
  readonly fileMode?: number;
  readonly dirMode?: number;
  readonly clock?: () => number;
}

/** The options once checked, with their defaults (resolved once, at construction). */
export interface Resolved {
  readonly root: string;
  readonly maxBytes: number | undefined;
  readonly minFreeRatio: number;
  readonly create: boolean;
  readonly readOnly: boolean;
  readonly fsync: boolean;
  readonly parallelReadThreshold: number;
  readonly readChunkSize: number;
  readonly readConcurrency: number;
  readonly poolReadThreshold: number;
  readonly openFiles: number;
  readonly openFileIdleMs: number;
  readonly descriptorCheck: DescriptorCheck | undefined;
  readonly directFill: boolean | undefined;
  readonly inlineReadMax: number | undefined;
  readonly lockLeaseMs: number;
  readonly lockPollMs: number;
  readonly flushIntervalMs: number;
  readonly staleTempMs: number;
  readonly verify: VerifyMode;
  readonly fileMode: number;
  readonly dirMode: number;
}

const URL_OPTIONS: Record<string, 'size' | 'number' | 'bool' | 'string'> = {
  name: 'string',
  maxBytes: 'size',
  minFreeRatio: 'number',
  create: 'bool',
  readOnly: 'bool',
  fsync: 'bool',
  parallelReadThreshold: 'size',
  readChunkSize: 'size',
  readConcurrency: 'number',
  pool: 'bool',
  poolReadThreshold: 'size',
  openFiles: 'number',
  openFileIdleMs: 'number',
  descriptorCheck: 'string',
  directFill: 'bool',
  inlineReadMax: 'size',
  lockLeaseMs: 'number',
  lockPollMs: 'number',
  flushIntervalMs: 'number',
  staleTempMs: 'number',
  verify: 'string',
};

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1e3,
  m: MiB,
  mib: MiB,
  mb: 1e6,
  g: 1024 * MiB,
  gib: 1024 * MiB,
  gb: 1e9,
  t: MiB * MiB,
  tib: MiB * MiB,
  tb: 1e12,
};

/** `1073741824`, `1GiB`, `1G` (binary) or `1GB` (decimal). */
export function parseSize(name: string, v: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw invalid(`option ${name}: '${v}' is not a size (e.g. 512MiB, 10GB)`);
  return Math.floor(Number(m[1]) * unit);
}

function num(name: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw invalid(`option ${name}: '${v}' is not a number`);
  return n;
}

function parseBool(name: string, v: string): boolean {
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw invalid(`option ${name}: '${v}' is not a boolean`);
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined || allowed.includes(v as T)) return v as T | undefined;
  throw invalid(`option ${name} must be one of ${allowed.join(', ')}, got ${String(v)}`);
}

export function invalid(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', message, { retryable: false });
}

export function resolveOptions(o: FsTierOptions): Resolved {
  const positive = (name: keyof FsTierOptions, v: number | undefined, dflt: number, min = 1): number => {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min)
      throw invalid(`option ${name} must be ≥ ${min}`);
    return v;
  };
  if (o.maxBytes !== undefined && !(typeof o.maxBytes === 'number' && o.maxBytes >= 0)) {
    throw invalid(`option maxBytes must be ≥ 0, got ${o.maxBytes}`);
  }
  const ratio = o.minFreeRatio ?? 0;
  if (!(typeof ratio === 'number' && ratio >= 0 && ratio <= 1)) {
    throw invalid(`option minFreeRatio must be between 0 and 1, got ${o.minFreeRatio}`);
  }
  return {
    root: resolve(o.root),
    maxBytes: o.maxBytes === Number.POSITIVE_INFINITY ? undefined : o.maxBytes,
    minFreeRatio: ratio,
    create: !o.readOnly && (o.create ?? true),
    readOnly: o.readOnly ?? false,
    fsync: o.fsync ?? true,
    parallelReadThreshold: positive('parallelReadThreshold', o.parallelReadThreshold, 8 * MiB),
    readChunkSize: positive('readChunkSize', o.readChunkSize, 4 * MiB),
    readConcurrency: Math.floor(positive('readConcurrency', o.readConcurrency, 4)),
    poolReadThreshold: positive('poolReadThreshold', o.poolReadThreshold, Number.POSITIVE_INFINITY),
    openFiles: Math.floor(positive('openFiles', o.openFiles, 64, 0)),
    openFileIdleMs: positive('openFileIdleMs', o.openFileIdleMs, 5000, 0),
    descriptorCheck: oneOf('descriptorCheck', o.descriptorCheck, ['inline', 'offload', 'none'] as const),
    directFill: o.directFill,
    inlineReadMax:
      o.inlineReadMax === undefined ? undefined : positive('inlineReadMax', o.inlineReadMax, 0, 0),
    lockLeaseMs: positive('lockLeaseMs', o.lockLeaseMs, 30_000, 100),
    lockPollMs: positive('lockPollMs', o.lockPollMs, 10),
    flushIntervalMs: positive('flushIntervalMs', o.flushIntervalMs, 30_000, 0),
    staleTempMs: positive('staleTempMs', o.staleTempMs, 3_600_000, 0),
    verify: oneOf('verify', o.verify, VERIFY_MODES) ?? 'first',
    fileMode: o.fileMode ?? 0o644,
    dirMode: o.dirMode ?? 0o755,
  };
}
/**
 * The options a `file:` URL names: the path as `root`, query parameters as the
 * serializable options. Unknown parameters are an INVALID_ARGUMENT error.
 */
export function optionsFromUrl(url: string | URL): FsTierOptions {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch (err) {
    throw new TierError('INVALID_ARGUMENT', `not a URL: ${String(url)}`, { cause: err, retryable: false });
  }
  if (u.protocol !== 'file:') throw invalid(`fsTierFromUrl needs a file: URL, got ${u.protocol}`);
  const opts: Record<string, unknown> = { root: fileURLToPath(u) };
  for (const [k, v] of u.searchParams) {
    const kind = URL_OPTIONS[k];
    if (!kind) throw invalid(`unknown option '${k}' in ${u.href}`);
    opts[k] =
      kind === 'string'
        ? v
        : kind === 'bool'
          ? parseBool(k, v)
          : kind === 'size'
            ? parseSize(k, v)
            : num(k, v);
  }
  return opts as unknown as FsTierOptions;
}
