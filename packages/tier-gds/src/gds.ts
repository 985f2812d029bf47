/**
 * The GPU-Direct Storage tier: LMCache's GDS backend semantics and on-disk layout,
 * with cuFile for device memory where it works and POSIX I/O everywhere else.
 */
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  decodeGdsHeader,
  GDS_HEADER_SIZE,
  GDS_WEKA_DATA_SUFFIX,
  type GdsHeader,
  type GdsTensor,
} from '@tierkit/lmcache';
import {
  CUFILE_FALLBACK_CODES,
  CufileError,
  type CufileHandle,
  capabilities,
  cufile,
  type DeviceBuffer,
  IoPool,
  loadAddon,
  NativeError,
  oDirectFlag,
  openFile,
} from '@tierkit/native';
import {
  type ObjectMeta,
  type OpOptions,
  resolveRange,
  TierError,
  throwIfAborted,
  type WriteData,
  type WriteOptions,
} from '@tierkit/tier-core';
import { FileTier, type IoEngine, nodeEngine } from './file-tier.js';
import { type LmcacheDirProblem, LmcacheGdsDirectory, type PurgeReport } from './lmcache-dir.js';
import { LmcacheGdsLayout } from './lmcache-layout.js';

export type UseCufile = 'auto' | 'on' | 'off';

export interface GdsTierOptions {
  /** One directory, several, or LMCache's comma-separated `gds_path`. */
  readonly gdsPath: string | readonly string[];
  /** Staging / pre-registered buffer size in MiB (LMCache's `cufile_buffer_size`); default 64. */
  readonly cufileBufferSize?: number;
  /**
   * 'auto' (default): cuFile where libcufile, a GPU and a supporting file system are
   * present, else POSIX (also per file, when handle registration fails with 5030 and
   * friends); 'on': cuFile required, even on tmpfs/overlayfs; 'off': POSIX only.
   * `true`/`false` mean 'on'/'off' (LMCache's extra_config.use_cufile).
   */
  readonly useCufile?: UseCufile | boolean;
  /**
   * CUDA device for device reads (default 0). With several gds paths it also picks
   * the one writes go to, as LMCache's `gds_path_sharding: by_gpu` does:
   * paths[device % paths.length]; reads look in every path.
   */
  readonly device?: number;
  /** LMCache's gds_path_sharding; only "by_gpu" exists (the default). */
  readonly gdsPathSharding?: 'by_gpu';
  /**
   * The full KV chunk's shape (e.g. [2, layers, 256, hidden] for KV_2LTD), recorded
   * in the header of plain writes under LMCache keys; `writeTensor` records any shape.
   */
  readonly kvShape?: readonly number[];
  /** MemoryFormat recorded for plain writes (default 1, KV_2LTD). */
  readonly fmt?: number;
  /** Open data files with O_DIRECT for cuFile (LMCache's use_direct_io); default true. */
  readonly useDirectIo?: boolean;
  /** Host I/O threads of the native pool (default 4; LMCache's disk_io_threads). */
  readonly ioThreads?: number;
  /** fsync before publishing (default true). */
  readonly fsync?: boolean;
  /** LMCache chunk size in tokens; recorded, not needed to read. */
  readonly chunkSize?: number;
  readonly name?: string;
}

/** How this tier moves bytes, and why. */
export interface GdsMode {
  /** 'cufile' when device reads use GPU-Direct Storage; 'posix' otherwise. */
  readonly device: 'cufile' | 'posix';
  /** The engine for host memory: the native pool, or Node's fs. */
  readonly host: string;
  readonly fsTypes: readonly string[];
  readonly reason: string;
}

export type VerifyProblem = LmcacheDirProblem;

export interface EvictOptions {
  /** Evict least recently used objects until the cache holds at most this many bytes. */
  readonly maxBytes?: number;
  /** Evict objects not used for this many milliseconds. */
  readonly idleMs?: number;
  readonly prefix?: string;
  readonly signal?: AbortSignal;
}

const NO_GDS_FS = new Set(['tmpfs', 'overlay', 'overlayfs']);

/** The file system type of `path` from /proc/mounts (longest matching mount point). */
export function fsTypeOf(path: string): string {
  let mounts: string;
  try {
    mounts = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return 'unknown';
  }
  const abs = resolve(path);
  let best = '';
  let type = 'unknown';
  for (const line of mounts.split('\n')) {
    const [, mnt, fstype] = line.split(' ');
    if (!mnt || !fstype) continue;
    const m = mnt.replace(/\\040/g, ' ');
    if ((abs === m || abs.startsWith(m.endsWith('/') ? m : `${m}/`)) && m.length > best.length) {
      best = m;
      type = fstype;
    }
  }
  return type;
}

function poolEngine(pool: IoPool): IoEngine {
  return {
    name: 'native-pool',
    read: (fd, target, position) => pool.read(fd, target, position),
    write: (fd, source, position) => pool.write(fd, source, position),
  };
}

function normaliseUse(v: GdsTierOptions['useCufile']): UseCufile {
  if (v === undefined) return 'auto';
  if (v === true) return 'on';
  if (v === false) return 'off';
  if (v === 'auto' || v === 'on' || v === 'off') return v;
  throw new TierError('INVALID_ARGUMENT', `useCufile must be auto, on or off, got ${JSON.stringify(v)}`, {
    retryable: false,
  });
}

export function splitPaths(p: string | readonly string[]): string[] {
  const list = (typeof p === 'string' ? p.split(',') : [...p])
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (list.length === 0) {
    throw new TierError('INVALID_ARGUMENT', 'gdsPath needs at least one directory', { retryable: false });
  }
  return list.map((s) => resolve(s));
}

export class GdsTier extends FileTier {
  readonly gdsPaths: readonly string[];
  readonly bufferBytes: number;
  readonly useCufile: UseCufile;
  readonly device: number;
  readonly chunkSize?: number;
  readonly mode: GdsMode;
  declare readonly layout: LmcacheGdsLayout;
  /** The directory as LMCache sees it: list, verify, purge in place. */
  readonly directory: LmcacheGdsDirectory;
  /** Resolves once the directories exist. */
  readonly ready: Promise<void>;
  #pool?: IoPool;
  #useDirectIo: boolean;
  #cufileOpen = false;
  /** Paths whose handle registration failed: POSIX from then on (KvikIO's per-file compat mode). */
  #compatFiles = new Set<string>();

  constructor(options: GdsTierOptions) {
    const paths = splitPaths(options.gdsPath);
    const fsTypes = paths.map(fsTypeOf);
    const weka = fsTypes.every((t) => t === 'wekafs');
    if (options.gdsPathSharding !== undefined && options.gdsPathSharding !== 'by_gpu') {
      throw new TierError(
        'INVALID_ARGUMENT',
        `gdsPathSharding must be "by_gpu" (the only strategy LMCache has), got ${JSON.stringify(options.gdsPathSharding)}`,
        { retryable: false },
      );
    }
    const device = options.device ?? 0;
    if (!Number.isInteger(device) || device < 0) {
      throw new TierError('INVALID_ARGUMENT', `device must be a CUDA device index, got ${device}`, {
        retryable: false,
      });
    }
    const layout = new LmcacheGdsLayout({
      paths,
      writePath: paths[device % paths.length],
      ...(weka ? { dataSuffix: GDS_WEKA_DATA_SUFFIX } : {}),
      ...(options.kvShape ? { kvShape: options.kvShape } : {}),
      ...(options.fmt !== undefined ? { fmt: options.fmt } : {}),
    });
    const use = normaliseUse(options.useCufile);
    const mib = options.cufileBufferSize ?? 64;
    if (!Number.isFinite(mib) || mib <= 0) {
      throw new TierError('INVALID_ARGUMENT', `cufileBufferSize is in MiB and must be > 0, got ${mib}`, {
        retryable: false,
      });
    }
    const pool = loadAddon() ? new IoPool({ threads: options.ioThreads ?? 4 }) : undefined;
    super({
      name: options.name ?? 'gds',
      layout,
      engine: pool ? poolEngine(pool) : nodeEngine,
      fsync: options.fsync,
      capability: { deviceMemory: true },
    });
    this.#pool = pool;
    this.gdsPaths = paths;
    this.bufferBytes = Math.round(mib * 1024 * 1024);
    this.useCufile = use;
    this.device = device;
    this.directory = new LmcacheGdsDirectory({ paths, dataSuffix: layout.dataSuffix });
    this.#useDirectIo = options.useDirectIo ?? true;
    if (options.chunkSize !== undefined) this.chunkSize = options.chunkSize;
    this.mode = this.#chooseMode(use, fsTypes);
    this.ready = Promise.all(paths.map((p) => mkdir(p, { recursive: true }))).then(() => {});
  }

  #chooseMode(use: UseCufile, fsTypes: string[]): GdsMode {
    const host = this.engineName;
    if (use === 'off') return { device: 'posix', host, fsTypes, reason: 'useCufile is off' };
    const caps = capabilities();
    const missing = !caps.cufile.available
      ? `libcufile unavailable: ${caps.cufile.reason}`
      : !caps.cuda.available
        ? `no CUDA device: ${caps.cuda.reason}`
        : undefined;
    if (missing) {
      if (use === 'on') {
        throw new TierError('UNAVAILABLE', `useCufile is on but ${missing}`, {
          tier: 'gds',
          retryable: false,
        });
      }
      return { device: 'posix', host, fsTypes, reason: missing };
    }
    const bad = fsTypes.find((t) => NO_GDS_FS.has(t));
    if (bad && use === 'auto') {
      return { device: 'posix', host, fsTypes, reason: `GDS does not work on ${bad}: POSIX instead` };
    }
    return { device: 'cufile', host, fsTypes, reason: use === 'on' ? 'useCufile is on' : 'cuFile available' };
  }

  /**
   * Reads an object (or part) straight into device memory: cuFile where it works,
   * else POSIX reads into a host staging buffer and host-to-device copies.
   */
  async readIntoDevice(
    key: string,
    target: DeviceBuffer,
    options: OpOptions & { offset?: number; length?: number; deviceOffset?: number } = {},
  ): Promise<number | undefined> {
    const o = await this.openObject(key, options);
    if (!o) return undefined;
    const devOff = options.deviceOffset ?? 0;
    let fileOffset: number;
    let length: number;
    try {
      const r = resolveRange(
        {
          offset: options.offset ?? 0,
          length: options.length ?? Math.min(o.size - (options.offset ?? 0), target.size - devOff),
        },
        o.size,
        key,
      );
      fileOffset = GDS_HEADER_SIZE + r.offset;
      length = r.length;
      if (devOff < 0 || devOff + length > target.size) {
        throw new TierError('INVALID_RANGE', `${length} bytes do not fit the DeviceBuffer at ${devOff}`, {
          key,
        });
      }
    } catch (err) {
      await o.fh.close();
      throw err;
    }
    try {
      if (this.mode.device === 'cufile' && !this.#compatFiles.has(o.path)) {
        const n = await this.#cufileRead(o.path, target, length, fileOffset, devOff, key);
        if (n !== undefined) return n;
      }
      // POSIX: staged through host memory in buffer-sized pieces.
      const stage = new Uint8Array(Math.min(this.bufferBytes, Math.max(length, 1)));
      let done = 0;
      while (done < length) {
        throwIfAborted(options.signal, key);
        const piece = stage.subarray(0, Math.min(stage.byteLength, length - done));
        const n = await this.engine.read(o.fh.fd, piece, fileOffset + done);
        if (n !== piece.byteLength)
          throw new TierError('INTEGRITY', `'${key}' is shorter than its header says`, { key });
        await target.copyFromHost(piece, devOff + done);
        done += n;
      }
      return length;
    } finally {
      await o.fh.close();
    }
  }

  /** Writes `size` bytes of device memory as the object `key` (staged through host memory). */
  async writeFromDevice(
    key: string,
    source: DeviceBuffer,
    size = source.size,
    options?: OpOptions,
  ): Promise<ObjectMeta> {
    const host = await source.toHost(0, size);
    return this.write(key, host, options);
  }

  async #cufileRead(
    path: string,
    target: DeviceBuffer,
    length: number,
    fileOffset: number,
    devOff: number,
    key: string,
  ): Promise<number | undefined> {
    if (!this.#cufileOpen) {
      cufile.open();
      this.#cufileOpen = true;
    }
    const flags = this.#useDirectIo && oDirectFlag() ? oDirectFlag() : 0;
    let fd: number;
    try {
      fd = openFile(path, flags);
    } catch {
      fd = openFile(path, 0); // O_DIRECT refused: cuFile's compat mode takes plain fds
    }
    const { closeSync } = await import('node:fs');
    let handle: CufileHandle | undefined;
    try {
      try {
        handle = cufile.registerHandle(fd);
      } catch (err) {
        if (
          this.useCufile === 'auto' &&
          err instanceof CufileError &&
          CUFILE_FALLBACK_CODES.has(err.cufileCode)
        ) {
          this.#compatFiles.add(path); // e.g. 5030 on a file system GDS cannot serve
          return undefined;
        }
        throw err;
      }
      const n = await handle.read(target, length, fileOffset, devOff);
      if (n !== length)
        throw new TierError('INTEGRITY', `cuFileRead returned ${n} of ${length} bytes`, { key });
      return n;
    } catch (err) {
      if (err instanceof NativeError) {
        throw new TierError('IO', `cuFile read of '${key}' failed: ${err.message}`, {
          key,
          tier: this.name,
          cause: err,
          details:
            err instanceof CufileError ? { cufileCode: err.cufileCode, cufileName: err.cufileName } : {},
        });
      }
      throw err;
    } finally {
      handle?.deregister();
      closeSync(fd);
    }
  }

  /** The LMCache tensor description of `key` (dtype, shape, fmt, metadata), or undefined. */
  async describe(key: string): Promise<GdsHeader | undefined> {
    const o = await this.openObject(key, undefined, true);
    if (!o) return undefined;
    try {
      const header = new Uint8Array(GDS_HEADER_SIZE);
      await o.fh.read(header, 0, header.byteLength, 0);
      return decodeGdsHeader(header);
    } finally {
      await o.fh.close();
    }
  }

  /**
   * Writes `data` as the tensor `tensor` describes (dtype, shape, MemoryFormat), so
   * LMCache loads it with that description. The byte count must match the tensor.
   */
  async writeTensor(
    key: string,
    data: WriteData,
    tensor: GdsTensor,
    options?: WriteOptions,
  ): Promise<ObjectMeta> {
    return this.writeDescribed(key, data, options, tensor);
  }

  /**
   * Checks every entry as LMCache will load it: a readable header LMCache accepts,
   * the data length it promises, and a `.metadata` companion equal to it.
   */
  async verify(prefix = ''): Promise<VerifyProblem[]> {
    return this.directory.verify(prefix);
  }

  /** Reads objects once so the page cache (or a tier above) holds them; returns bytes read. */
  async prewarm(prefix = '', options: OpOptions = {}): Promise<number> {
    let total = 0;
    const scratch = new Uint8Array(Math.min(this.bufferBytes, 16 * 1024 * 1024));
    for await (const meta of this.list(prefix, options)) {
      const o = await this.openObject(meta.key, options);
      if (!o) continue;
      try {
        for (let at = 0; at < o.size; at += scratch.byteLength) {
          throwIfAborted(options.signal, meta.key);
          total += await this.engine.read(
            o.fh.fd,
            scratch.subarray(0, Math.min(scratch.byteLength, o.size - at)),
            GDS_HEADER_SIZE + at,
          );
        }
      } finally {
        await o.fh.close();
      }
    }
    return total;
  }

  /**
   * Evicts entries by last use (access or modification time), which LMCache itself
   * never does: the files the scan found go, .metadata first. Returns the keys removed.
   */
  async evict(options: EvictOptions): Promise<string[]> {
    const report = await this.purge(options);
    return report.removed.map((r) => r.key);
  }

  /** evict() with the full report (bytes before and after, what was skipped). */
  async purge(options: EvictOptions): Promise<PurgeReport> {
    return this.directory.purge({
      ...(options.maxBytes !== undefined ? { maxBytes: options.maxBytes } : {}),
      ...(options.idleMs !== undefined ? { olderThanMs: options.idleMs } : {}),
      ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  async close(): Promise<void> {
    await super.close();
    this.#pool?.close();
    this.#pool = undefined;
    if (this.#cufileOpen) {
      this.#cufileOpen = false;
      try {
        cufile.close();
      } catch {
        // The driver may be shared with other tiers in this process.
      }
    }
  }
}

export function createGdsTier(options: GdsTierOptions): GdsTier {
  return new GdsTier(options);
}
