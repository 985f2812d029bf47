/**
 * The 3FS tier: LMCache's 3FS connector configuration and FS-connector file
 * naming, with I/O through USRBIO rings where the 3FS client library is present
 * and plain POSIX on the FUSE mount otherwise.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import {
  decodeRemoteMetadata,
  FileTier,
  type IoEngine,
  nodeEngine,
  pyIntParse,
  REMOTE_METADATA_SIZE,
  type RemoteMetadata,
} from '@tierkit/lmcache';
import { capabilities, IoPool, loadAddon, loadHf3fs, usrbio } from '@tierkit/native';
import { type ObjectMeta, TierError, type WriteData, type WriteOptions } from '@tierkit/tier-core';
import { FsConnectorLayout, type FsTensor, type Hf3fsNaming } from './fs-layout.js';
import { UsrbioEngine } from './usrbio-engine.js';

export type { Hf3fsNaming } from './fs-layout.js';

export interface Hf3fsTierOptions {
  /** The 3FS mount point (LMCache: hf3fs_mount_point). */
  readonly mountPoint: string;
  /** Base directories under the mount, comma-separated or a list; a key's hash picks one. */
  readonly basePath: string | readonly string[];
  /** Bytes of each shared I/O buffer, 100 MB–2 GB (default 200 MiB). */
  readonly iovSize?: number;
  /** Ring entries, 128–1024 (default 256). */
  readonly iorEntries?: number;
  /** −128…128: >0 batches of exactly ioDepth, 0 ASAP, <0 ASAP but ≤ −ioDepth at a time (default 0). */
  readonly ioDepth?: number;
  /** NUMA node for the shared memory, −1 for none (default −1). */
  readonly numaId?: number;
  /** Parallel rings (LMCache's io threads), 2–16 (default 4). */
  readonly ioThreadNum?: number;
  /**
   * 'tierkit' (default): `<quote(key)>.data`, reversible for any key, no header;
   * 'lmcache': LMCache's FS connector files (`<key, / as -SEP->.data`, base path by
   * `abs(chunk_hash) % n`, RemoteMetadata header), so tierkit and LMCache share them.
   */
  readonly naming?: Hf3fsNaming;
  /** With 'lmcache' naming: the 28-byte RemoteMetadata before the data (LMCache's save_chunk_meta, default true). */
  readonly saveChunkMeta?: boolean;
  /** The full KV chunk's 4-D shape, recorded in RemoteMetadata for plain writes under LMCache keys. */
  readonly kvShape?: readonly number[];
  /** Largest single USRBIO io in bytes (default 4 MiB). */
  readonly usrbioPieceSize?: number;
  /** 'auto' (default): USRBIO when the client library and mount are there; 'on': required; 'off': POSIX. */
  readonly useUsrbio?: 'auto' | 'on' | 'off';
  /** Ring timeout in ms (default 200, as LMCache). */
  readonly timeoutMs?: number;
  readonly fsync?: boolean;
  readonly name?: string;
}

export const HF3FS_LIMITS = {
  iovSize: [100 * 1024 * 1024, 2 * 1024 * 1024 * 1024],
  iorEntries: [128, 1024],
  ioDepth: [-128, 128],
  ioThreadNum: [2, 16],
} as const;

function invalid(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', `3FS tier: ${message}`, { retryable: false });
}

/** An integer option as LMCache reads it (Python int(): "0x100" and "1e2" are refused). */
function intIn(v: unknown, name: string, lo: number, hi: number, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  let n: number | undefined;
  if (typeof v === 'number' && Number.isInteger(v)) n = v;
  else if (typeof v === 'string') {
    const b = pyIntParse(v);
    n = b === undefined ? undefined : Number(b);
  }
  if (n === undefined) throw invalid(`${name} must be an integer, got ${JSON.stringify(v)}`);
  if (n < lo || n > hi) throw invalid(`${name} must be in [${lo}, ${hi}], got ${n}`);
  return n;
}

function numaNodes(): number {
  try {
    return Math.max(1, readdirSync('/sys/devices/system/node').filter((d) => /^node\d+$/.test(d)).length);
  } catch {
    return 1;
  }
}

/**
 * Normalises options given in tierkit's spelling (`iovSize`), LMCache's extra_config
 * spelling (`hf3fs_iov_size`) or LMCache's bare spelling (`iov_size`), and validates
 * them with LMCache's ranges.
 */
export function hf3fsOptions(input: Record<string, unknown>): Required<
  Omit<Hf3fsTierOptions, 'name' | 'fsync' | 'basePath' | 'kvShape'>
> & {
  basePaths: string[];
  kvShape?: readonly number[];
} {
  const pick = (camel: string, snake: string) => input[camel] ?? input[`hf3fs_${snake}`] ?? input[snake];
  const mount = pick('mountPoint', 'mount_point');
  if (typeof mount !== 'string' || mount === '') throw invalid('mountPoint (hf3fs_mount_point) is required');
  const mountPoint = resolve(mount);
  if (!existsSync(mountPoint) || !statSync(mountPoint).isDirectory()) {
    throw invalid(`mount point ${mountPoint} does not exist or is not a directory`);
  }
  const rawBase = pick('basePath', 'base_path') ?? input.base_paths;
  const list = typeof rawBase === 'string' ? rawBase.split(',') : Array.isArray(rawBase) ? rawBase : [];
  const basePaths = list
    .map((p) => String(p).trim())
    .filter((p) => p !== '')
    .map((p) => resolve(mountPoint, p));
  if (basePaths.length === 0) throw invalid('basePath (hf3fs_base_path) is required');
  for (const p of basePaths) {
    const rel = relative(mountPoint, p);
    if (rel.startsWith('..') || resolve(mountPoint, rel) !== p) {
      throw invalid(`base path ${p} is not inside the mount point ${mountPoint}`);
    }
  }
  const [iovLo, iovHi] = HF3FS_LIMITS.iovSize;
  const maxNuma = numaNodes() - 1;
  const naming = (input.naming ?? 'tierkit') as Hf3fsNaming;
  if (naming !== 'tierkit' && naming !== 'lmcache')
    throw invalid(`naming must be tierkit or lmcache, got ${naming}`);
  const use = (input.useUsrbio ?? 'auto') as 'auto' | 'on' | 'off';
  if (!['auto', 'on', 'off'].includes(use)) throw invalid(`useUsrbio must be auto, on or off, got ${use}`);
  const iorEntries = intIn(pick('iorEntries', 'ior_entries'), 'ior_entries', ...HF3FS_LIMITS.iorEntries, 256);
  const ioDepth = intIn(pick('ioDepth', 'io_depth'), 'io_depth', ...HF3FS_LIMITS.ioDepth, 0);
  // The io worker keeps one completion slot free: a batch of io_depth must fit in entries - 1.
  if (ioDepth >= iorEntries)
    throw invalid(`io_depth must be below ior_entries (${iorEntries}), got ${ioDepth}`);
  const saveChunkMeta = input.saveChunkMeta ?? input.save_chunk_meta ?? true;
  if (typeof saveChunkMeta !== 'boolean')
    throw invalid(`saveChunkMeta must be a boolean, got ${JSON.stringify(saveChunkMeta)}`);
  const kvShape = input.kvShape;
  if (
    kvShape !== undefined &&
    (!Array.isArray(kvShape) || !kvShape.every((d) => Number.isSafeInteger(d) && d > 0))
  ) {
    throw invalid(`kvShape must be a list of positive integers, got ${JSON.stringify(kvShape)}`);
  }
  return {
    mountPoint,
    basePaths,
    iovSize: intIn(pick('iovSize', 'iov_size'), 'iov_size', iovLo, iovHi, 200 * 1024 * 1024),
    iorEntries,
    ioDepth,
    numaId: intIn(pick('numaId', 'numa_id'), 'numa_id', -1, maxNuma, -1),
    ioThreadNum: intIn(pick('ioThreadNum', 'io_thread_num'), 'io_thread_num', ...HF3FS_LIMITS.ioThreadNum, 4),
    timeoutMs: intIn(pick('timeoutMs', 'timeout'), 'timeout', 0, 3_600_000, 200),
    naming,
    useUsrbio: use,
    saveChunkMeta,
    usrbioPieceSize: intIn(input.usrbioPieceSize, 'usrbioPieceSize', 1, 1 << 30, 4 * 1024 * 1024),
    ...(kvShape ? { kvShape: kvShape as number[] } : {}),
  };
}

export interface Hf3fsMode {
  readonly engine: 'usrbio' | 'posix';
  readonly reason: string;
}

export class Hf3fsTier extends FileTier {
  readonly options: ReturnType<typeof hf3fsOptions>;
  readonly mode: Hf3fsMode;
  #pool?: IoPool;
  #usrbio?: UsrbioEngine;

  constructor(options: Hf3fsTierOptions | Record<string, unknown>) {
    const o = hf3fsOptions(options as Record<string, unknown>);
    const { engine, mode, pool, usrbioEngine } = chooseEngine(o);
    super({
      name: (options as Hf3fsTierOptions).name ?? 'hf3fs',
      layout: new FsConnectorLayout(o.basePaths, o.naming, {
        saveChunkMeta: o.saveChunkMeta,
        ...(o.kvShape ? { kvShape: o.kvShape } : {}),
      }),
      engine,
      fsync: (options as Hf3fsTierOptions).fsync,
      // RemoteMetadata has no room for a source's size and ETag.
      capability: { sourceMeta: false },
    });
    this.options = o;
    this.mode = mode;
    this.#pool = pool;
    this.#usrbio = usrbioEngine;
  }

  declare readonly layout: FsConnectorLayout;

  /** The USRBIO engine, when in use. */
  get usrbioEngine(): UsrbioEngine | undefined {
    return this.#usrbio;
  }

  /**
   * Writes `data` as the tensor described (dtype, 4-D shape, MemoryFormat), recorded in
   * LMCache's RemoteMetadata header ('lmcache' naming with saveChunkMeta).
   */
  async writeTensor(
    key: string,
    data: WriteData,
    tensor: FsTensor,
    options?: WriteOptions,
  ): Promise<ObjectMeta> {
    return this.writeDescribed(key, data, options, tensor);
  }

  /** The RemoteMetadata of `key` ('lmcache' naming with saveChunkMeta), or undefined. */
  async describe(key: string): Promise<RemoteMetadata | undefined> {
    if (!this.layout.saveChunkMeta) return undefined;
    const o = await this.openObject(key, undefined, true);
    if (!o) return undefined;
    try {
      const head = new Uint8Array(REMOTE_METADATA_SIZE);
      await o.fh.read(head, 0, head.byteLength, 0);
      return decodeRemoteMetadata(head);
    } finally {
      await o.fh.close();
    }
  }

  async close(): Promise<void> {
    await super.close();
    this.#usrbio?.close();
    this.#pool?.close();
  }
}

function chooseEngine(o: ReturnType<typeof hf3fsOptions>): {
  engine: IoEngine;
  mode: Hf3fsMode;
  pool?: IoPool;
  usrbioEngine?: UsrbioEngine;
} {
  let why: string;
  if (o.useUsrbio === 'off') why = 'useUsrbio is off';
  else {
    const lib = loadHf3fs();
    if (!lib.available) why = `3FS client library unavailable: ${lib.reason}`;
    else {
      const mount = usrbio.extractMountPoint(o.mountPoint);
      if (mount !== o.mountPoint)
        why = `${o.mountPoint} is not a 3FS mount point (3FS says ${mount ?? 'none'})`;
      else {
        const e = new UsrbioEngine({ ...o, pieceSize: o.usrbioPieceSize });
        return { engine: e, usrbioEngine: e, mode: { engine: 'usrbio', reason: `USRBIO via ${lib.path}` } };
      }
    }
  }
  if (o.useUsrbio === 'on')
    throw new TierError('UNAVAILABLE', `3FS tier: useUsrbio is on but ${why}`, { retryable: false });
  const pool = loadAddon() ? new IoPool({ threads: o.ioThreadNum }) : undefined;
  const engine: IoEngine = pool
    ? { name: 'posix', read: (fd, t, p) => pool.read(fd, t, p), write: (fd, s, p) => pool.write(fd, s, p) }
    : nodeEngine;
  return { engine, pool, mode: { engine: 'posix', reason: `POSIX on the mount: ${why}` } };
}

export function createHf3fsTier(options: Hf3fsTierOptions): Hf3fsTier {
  return new Hf3fsTier(options);
}

/** Capabilities of this process for 3FS (the USRBIO library's status). */
export function hf3fsCapability(): ReturnType<typeof capabilities>['hf3fs'] {
  return capabilities().hf3fs;
}
