/**
 * The 3FS tier: LMCache's 3FS connector configuration and FS-connector file
 * naming, with I/O through USRBIO rings where the 3FS client library is present
 * and plain POSIX on the FUSE mount otherwise.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { capabilities, Hf3fsIor, Hf3fsIov, IoPool, loadAddon, loadHf3fs, usrbio } from '@tierkit/native';
import { TierError } from '@tierkit/tier-core';
import { type FileLayout, FileTier, type IoEngine, nodeEngine, pyQuote, pyUnquote } from '@tierkit/tier-gds';

export type Hf3fsNaming = 'tierkit' | 'lmcache';

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
   * 'tierkit' (default): `<quote(key)>.data`, reversible for any key; 'lmcache': LMCache's
   * FS connector name `<key with / → ->.data`, so tierkit and LMCache share files.
   */
  readonly naming?: Hf3fsNaming;
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

function intIn(v: unknown, name: string, lo: number, hi: number, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n))
    throw invalid(`${name} must be an integer, got ${JSON.stringify(v)}`);
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
export function hf3fsOptions(
  input: Record<string, unknown>,
): Required<Omit<Hf3fsTierOptions, 'name' | 'fsync' | 'basePath'>> & { basePaths: string[] } {
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
  return {
    mountPoint,
    basePaths,
    iovSize: intIn(pick('iovSize', 'iov_size'), 'iov_size', iovLo, iovHi, 200 * 1024 * 1024),
    iorEntries: intIn(pick('iorEntries', 'ior_entries'), 'ior_entries', ...HF3FS_LIMITS.iorEntries, 256),
    ioDepth: intIn(pick('ioDepth', 'io_depth'), 'io_depth', ...HF3FS_LIMITS.ioDepth, 0),
    numaId: intIn(pick('numaId', 'numa_id'), 'numa_id', -1, maxNuma, -1),
    ioThreadNum: intIn(pick('ioThreadNum', 'io_thread_num'), 'io_thread_num', ...HF3FS_LIMITS.ioThreadNum, 4),
    timeoutMs: intIn(pick('timeoutMs', 'timeout'), 'timeout', 0, 3_600_000, 200),
    naming,
    useUsrbio: use,
  };
}

/** The hash LMCache picks a base path by: the chunk hash of an LMCache key, else SHA-256. */
function pathIndex(key: string, n: number): number {
  if (n === 1) return 0;
  const field = key.split('@')[4];
  if (field !== undefined) {
    try {
      const h = /^-?\d+$/.test(field) ? BigInt(field) : BigInt(`0x${field.replace(/^-/, '')}`);
      return Number((h < 0n ? -h : h) % BigInt(n));
    } catch {
      // not an LMCache key after all
    }
  }
  return Number.parseInt(createHash('sha256').update(key).digest('hex').slice(0, 8), 16) % n;
}

/** LMCache's FS-connector layout: `<base>/<name>.data`, one flat directory per base path. */
export class FsConnectorLayout implements FileLayout {
  readonly headerSize = 0;
  constructor(
    readonly basePaths: readonly string[],
    readonly naming: Hf3fsNaming,
  ) {}

  fileName(key: string): string {
    return `${this.naming === 'lmcache' ? key.replace(/\//g, '-') : pyQuote(key)}.data`;
  }

  paths(key: string): string[] {
    const first = pathIndex(key, this.basePaths.length);
    const name = this.fileName(key);
    return this.basePaths.map((_, i) => join(this.basePaths[(first + i) % this.basePaths.length], name));
  }

  tempPath(path: string): string {
    // Not ending in .data, so neither LMCache nor our scan ever lists it.
    return `${path.slice(0, -'.data'.length)}.${randomBytes(4).toString('hex')}.tmp`;
  }

  async *scan(): AsyncIterable<{ key: string; path: string }> {
    for (const base of this.basePaths) {
      let names: string[];
      try {
        names = await readdir(base);
      } catch {
        continue;
      }
      for (const name of names) {
        if (!name.endsWith('.data')) continue;
        const stem = name.slice(0, -'.data'.length);
        let key: string;
        try {
          key = this.naming === 'lmcache' ? stem : pyUnquote(stem);
        } catch {
          continue;
        }
        yield { key, path: join(base, name) };
      }
    }
  }
}

interface Lane {
  iov: Hf3fsIov;
  rring: Hf3fsIor;
  wring: Hf3fsIor;
}

/**
 * USRBIO: bytes go through a shared iov and an I/O ring per direction. Each lane
 * (LMCache's io thread) owns one iov and two rings and serves one operation at a
 * time; all preparation happens on this JS thread, waits on a worker.
 */
export class UsrbioEngine implements IoEngine {
  readonly name = 'usrbio';
  #lanes: Lane[] = [];
  #free: Lane[] = [];
  #waiters: ((lane: Lane) => void)[] = [];
  readonly #o: ReturnType<typeof hf3fsOptions>;
  /** Largest single io; a transfer is cut into pieces of this size within the iov. */
  readonly pieceSize = 4 * 1024 * 1024;

  constructor(options: ReturnType<typeof hf3fsOptions>) {
    this.#o = options;
  }

  async #acquire(): Promise<Lane> {
    const lane = this.#free.pop();
    if (lane) return lane;
    if (this.#lanes.length < this.#o.ioThreadNum) {
      const o = this.#o;
      const iov = new Hf3fsIov(o.mountPoint, o.iovSize, { numa: o.numaId });
      const ring = (forRead: boolean) =>
        new Hf3fsIor(o.mountPoint, {
          entries: o.iorEntries,
          forRead,
          ioDepth: o.ioDepth,
          timeoutMs: o.timeoutMs,
          numa: o.numaId,
        });
      const created = { iov, rring: ring(true), wring: ring(false) };
      this.#lanes.push(created);
      return created;
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #release(lane: Lane): void {
    const next = this.#waiters.shift();
    if (next) next(lane);
    else this.#free.push(lane);
  }

  read(fd: number, target: Uint8Array, position: number): Promise<number> {
    return this.#transfer(fd, target, position, true);
  }

  write(fd: number, source: Uint8Array, position: number): Promise<number> {
    return this.#transfer(fd, source, position, false);
  }

  async #transfer(fd: number, bytes: Uint8Array, position: number, read: boolean): Promise<number> {
    const lane = await this.#acquire();
    usrbio.registerFd(fd);
    try {
      const ring = read ? lane.rring : lane.wring;
      const window = Math.min(this.#o.iovSize, this.pieceSize * this.#o.iorEntries);
      let done = 0;
      while (done < bytes.byteLength) {
        const span = Math.min(window, bytes.byteLength - done);
        if (!read) lane.iov.bytes(0, span).set(bytes.subarray(done, done + span));
        const pieces: [number, number][] = [];
        for (let at = 0; at < span; at += this.pieceSize)
          pieces.push([at, Math.min(this.pieceSize, span - at)]);
        for (const [at, len] of pieces) ring.prep(lane.iov, fd, position + done + at, len, at, 1);
        // io_depth > 0 serves whole batches only: pad with empty ios (userdata 0).
        let count = pieces.length;
        const depth = this.#o.ioDepth;
        if (depth > 0) {
          for (; count % depth !== 0; count++) ring.prep(lane.iov, fd, 0, 0, 0, 0);
        }
        ring.submit();
        let got = 0;
        let moved = 0;
        let short = false;
        while (got < count) {
          const cqes = await ring.wait(
            count - got,
            1,
            this.#o.timeoutMs > 0 ? Math.max(this.#o.timeoutMs, 1000) : -1,
          );
          if (cqes.length === 0) {
            throw new TierError('IO', `3FS ring timed out after ${got} of ${count} ios`, { retryable: true });
          }
          for (const c of cqes) {
            if (c.result < 0) {
              throw new TierError('IO', `3FS io failed: errno ${-c.result}`, {
                details: { errno: -c.result },
              });
            }
            if (c.userdata === 1) moved += c.result;
          }
          got += cqes.length;
        }
        if (moved < span) short = true;
        if (read) bytes.set(lane.iov.bytes(0, moved), done);
        done += moved;
        if (short) break; // end of file
      }
      return done;
    } finally {
      usrbio.deregisterFd(fd);
      this.#release(lane);
    }
  }

  close(): void {
    for (const l of this.#lanes) {
      l.rring.destroy();
      l.wring.destroy();
      l.iov.destroy();
    }
    this.#lanes = [];
    this.#free = [];
  }
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
      layout: new FsConnectorLayout(o.basePaths, o.naming),
      engine,
      fsync: (options as Hf3fsTierOptions).fsync,
    });
    this.options = o;
    this.mode = mode;
    this.#pool = pool;
    this.#usrbio = usrbioEngine;
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
        const e = new UsrbioEngine(o);
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
