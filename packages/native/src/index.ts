/**
 * @tierkit/native: the addon's JavaScript face. Loading never throws: where no
 * binary loads (src/load.ts), or a vendor library is missing, `capabilities()` says
 * so and callers pick their POSIX path.
 */
import { type AddonSource, loadBinary } from './load.js';

/** The raw binding (see csrc/addon.cc). Internal: use the wrappers below. */
export interface Addon {
  loadCuda(path?: string): LibraryStatus & { deviceCount?: number };
  loadCufile(path?: string): LibraryStatus & { version?: number };
  loadHf3fs(path?: string): LibraryStatus;
  cudaDeviceInfo(device: number): DeviceInfo;
  cudaMalloc(device: number, size: number): bigint;
  cudaFree(device: number, pointer: bigint): void;
  cudaCopyToDevice(device: number, pointer: bigint, src: ArrayBufferView): Promise<void>;
  cudaCopyToHost(device: number, dst: ArrayBufferView, pointer: bigint): Promise<void>;
  cudaMemset(device: number, pointer: bigint, value: number, size: number): void;
  cudaPointerInfo(pointer: bigint): {
    memoryType: 'device' | 'host' | 'other' | 'unregistered';
    device?: number;
  };
  cufileDriverOpen(): void;
  cufileDriverClose(): void;
  cufileHandleRegister(fd: number): bigint;
  cufileHandleDeregister(handle: bigint): void;
  cufileBufRegister(pointer: bigint, size: number, flags?: number): void;
  cufileBufDeregister(pointer: bigint): void;
  cufileIo(
    write: boolean,
    device: number,
    handle: bigint,
    pointer: bigint,
    size: number,
    fileOffset: number,
    bufferOffset: number,
    keep?: unknown,
  ): Promise<number>;
  addressOf(view: ArrayBufferView): bigint;
  readCached(fd: number, view: ArrayBufferView, position: number): number;
  hf3fsExtractMountPoint(path: string): string | null;
  hf3fsIsHf3fs(fd: number): boolean;
  hf3fsIovCreate(
    mount: string,
    size: number,
    blockSize: number,
    numa: number,
  ): { iov: unknown; buffer: ArrayBuffer };
  hf3fsIovDestroy(iov: unknown, buffer?: ArrayBuffer): void;
  hf3fsIorCreate(
    mount: string,
    entries: number,
    forRead: boolean,
    ioDepth: number,
    timeout: number,
    numa: number,
    flags?: number,
  ): unknown;
  hf3fsIorDestroy(ior: unknown): void;
  hf3fsRegFd(fd: number, flags?: number): void;
  hf3fsDeregFd(fd: number): void;
  hf3fsPrepIo(
    ior: unknown,
    iov: unknown,
    read: boolean,
    iovOffset: number,
    fd: number,
    fileOffset: number,
    length: number,
    userdata?: number,
  ): number;
  hf3fsSubmitIos(ior: unknown): void;
  hf3fsWaitForIos(
    ior: unknown,
    maxResults: number,
    minResults: number,
    timeoutMs: number,
  ): Promise<Completion[]>;
  alignedBuffer(size: number, alignment?: number): ArrayBuffer;
  openFile(path: string, flags: number, mode?: number): number;
  constants: {
    O_DIRECT: number;
    O_RDONLY: number;
    O_WRONLY: number;
    O_RDWR: number;
    O_CREAT: number;
    O_TRUNC: number;
  };
  Pool: new (threads: number) => RawPool;
  abiVersion: number;
}

interface RawPool {
  run(ops: [number, ArrayBufferView, number, boolean][]): Promise<number[]>;
  close(): void;
  readonly threads: number;
}

export interface LibraryStatus {
  readonly available: boolean;
  /** Whether loading was attempted (libraries are opened on first use). */
  readonly tried: boolean;
  readonly path: string;
  /** Why it is not available (dlopen's message, a missing symbol, no device …). */
  readonly reason?: string;
}

export interface DeviceInfo {
  readonly index: number;
  readonly name: string;
  readonly totalMemory: number;
}

export interface Completion {
  readonly index: number;
  /** Bytes moved, or -errno. */
  readonly result: number;
  readonly userdata: number;
}

export interface NativeCapabilities {
  readonly addon: {
    readonly loaded: boolean;
    readonly path?: string;
    /** `prebuild` (the tarball's binary), `build` (compiled here) or `env` (TIERKIT_NATIVE_ADDON). */
    readonly source?: AddonSource;
    readonly reason?: string;
  };
  readonly cuda: LibraryStatus & { readonly deviceCount: number };
  readonly cufile: LibraryStatus & { readonly version?: number };
  readonly hf3fs: LibraryStatus;
  /** The native pread/pwrite pool. */
  readonly pool: boolean;
  /** O_DIRECT is defined on this platform. */
  readonly oDirect: boolean;
  /** `cachedRead()` is available: page-cache reads on the calling thread (preadv2 RWF_NOWAIT). */
  readonly readCached: boolean;
}

/** Paths of the vendor libraries; default to the sonames, overridable by environment. */
export interface LibraryPaths {
  readonly cuda?: string;
  readonly cufile?: string;
  readonly hf3fs?: string;
}

/** Every error the addon raises: `code` is CUDA_ERROR, CUFILE_ERROR, ERRNO, UNAVAILABLE, INVALID or CLOSED. */
export class NativeError extends Error {
  readonly code: string;
  readonly errno?: number;
  readonly errnoName?: string;
  readonly cudaCode?: number;
  constructor(message: string, fields: Partial<NativeError> & { code: string }) {
    super(message);
    this.name = 'NativeError';
    this.code = fields.code;
    if (fields.errno !== undefined) this.errno = fields.errno;
    if (fields.errnoName !== undefined) this.errnoName = fields.errnoName;
    if (fields.cudaCode !== undefined) this.cudaCode = fields.cudaCode;
  }
}

/** A cuFile failure with its status code and name, e.g. 5030 CU_FILE_INTERNAL_ERROR. */
export class CufileError extends NativeError {
  readonly cufileCode: number;
  readonly cufileName: string;
  constructor(
    message: string,
    fields: Partial<CufileError> & { code: string; cufileCode: number; cufileName: string },
  ) {
    super(message, fields);
    this.name = 'CufileError';
    this.cufileCode = fields.cufileCode;
    this.cufileName = fields.cufileName;
  }
}

/** cuFile status codes that mean "this file or platform cannot do GDS": fall back to POSIX. */
export const CUFILE_FALLBACK_CODES: ReadonlySet<number> = new Set([
  5001, 5007, 5008, 5009, 5010, 5011, 5018, 5019, 5020, 5025, 5029, 5030, 5033, 5034, 5045, 5048,
]);

function convert(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof NativeError) return err;
  const e = err as Error & Record<string, any>;
  if (typeof e.code !== 'string') return err;
  if (typeof e.cufileCode === 'number') {
    return new CufileError(e.message, {
      code: e.code,
      cufileCode: e.cufileCode,
      cufileName: e.cufileName,
      cudaCode: e.cudaCode,
      errno: e.errno,
    });
  }
  return new NativeError(e.message, {
    code: e.code,
    errno: e.errno,
    errnoName: e.errnoName,
    cudaCode: e.cudaCode,
  });
}

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw convert(err);
  }
}

async function callAsync<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw convert(err);
  }
}

// ------------------------------------------------------------------ loading

export { type Crc32c, crc32c, crc32cJs, jsCrc32c, nativeCrc32c, portableCrc32c } from './crc32c.js';
export { type AddonLoad, type AddonSource, PREBUILD_FILE, prebuildDir, unavailableNotice } from './load.js';

let addon: Addon | undefined;
let addonTried = false;
let addonPath: string | undefined;
let addonSource: AddonSource | undefined;
let addonReason: string | undefined;

/** The raw addon, or undefined where none loads (see `capabilities().addon.reason`). */
export function loadAddon(): Addon | undefined {
  if (addonTried) return addon;
  addonTried = true;
  const r = loadBinary();
  addon = r.addon as Addon | undefined;
  addonPath = r.path;
  addonSource = r.source;
  addonReason = r.reason;
  return addon;
}

/**
 * Copies into `view` what the page cache holds at `position` of `fd`, on the calling
 * thread and without waiting for the disk: returns the bytes copied (short where the
 * cached run ends, 0 at the end of the file), or -1 when the first page is not cached.
 * Throws a NativeError (code ERRNO) where the file system cannot do it (EOPNOTSUPP).
 */
export type CachedRead = (fd: number, view: ArrayBufferView, position: number) => number;

/** The page-cache read, or undefined where the addon is not built or predates it. */
export function cachedRead(): CachedRead | undefined {
  const a = loadAddon();
  if (!a || typeof a.readCached !== 'function') return undefined;
  const raw = a.readCached;
  return (fd, view, position) => {
    try {
      return raw(fd, view, position);
    } catch (err) {
      throw convert(err);
    }
  };
}

/** The addon, or a typed UNAVAILABLE error saying why not. */
export function requireAddon(): Addon {
  const a = loadAddon();
  if (!a) throw new NativeError(addonReason ?? 'the addon is not available', { code: 'UNAVAILABLE' });
  return a;
}

const missing = (path: string, reason: string): LibraryStatus => ({
  available: false,
  tried: false,
  path,
  reason,
});

function libPaths(paths: LibraryPaths = {}): Required<LibraryPaths> {
  return {
    cuda: paths.cuda ?? process.env.TIERKIT_CUDA_LIB ?? 'libcuda.so.1',
    cufile: paths.cufile ?? process.env.TIERKIT_CUFILE_LIB ?? 'libcufile.so.0',
    hf3fs: paths.hf3fs ?? process.env.TIERKIT_HF3FS_LIB ?? 'libhf3fs_api_shared.so',
  };
}

/** Loads the CUDA driver (once per process); the status says why not. */
export function loadCuda(path?: string): LibraryStatus & { deviceCount: number } {
  const a = loadAddon();
  const p = libPaths({ cuda: path }).cuda;
  if (!a) return { ...missing(p, addonReason!), deviceCount: 0 };
  const s = a.loadCuda(p);
  return { ...s, deviceCount: s.deviceCount ?? 0 };
}

/** Loads libcufile (once per process). Does not open the driver. */
export function loadCufile(path?: string): LibraryStatus & { version?: number } {
  const a = loadAddon();
  const p = libPaths({ cufile: path }).cufile;
  if (!a) return missing(p, addonReason!);
  return a.loadCufile(p);
}

/** Loads the 3FS USRBIO client library (once per process). */
export function loadHf3fs(path?: string): LibraryStatus {
  const a = loadAddon();
  const p = libPaths({ hf3fs: path }).hf3fs;
  if (!a) return missing(p, addonReason!);
  return a.loadHf3fs(p);
}

/** What this process can use, and why not. Loads the libraries on first call. */
export function capabilities(paths: LibraryPaths = {}): NativeCapabilities {
  const a = loadAddon();
  const p = libPaths(paths);
  return {
    addon: a
      ? { loaded: true, path: addonPath, source: addonSource }
      : { loaded: false, reason: addonReason },
    cuda: loadCuda(p.cuda),
    cufile: loadCufile(p.cufile),
    hf3fs: loadHf3fs(p.hf3fs),
    pool: !!a,
    oDirect: !!a && a.constants.O_DIRECT !== 0,
    readCached: !!a && typeof a.readCached === 'function',
  };
}

// ------------------------------------------------------------------ CUDA

/** Number of CUDA devices (0 where there is no driver or GPU). */
export function deviceCount(): number {
  return loadCuda().deviceCount;
}

/** Name and memory of a device. */
export function deviceInfo(device = 0): DeviceInfo {
  return call(() => requireAddon().cudaDeviceInfo(device));
}

/**
 * Device memory from cuMemAlloc. Not garbage collected: call `free()`. `pointer` is
 * the raw CUdeviceptr, for interop with other native code (PyTorch, CuPy, cuFile).
 */
export class DeviceBuffer {
  readonly device: number;
  readonly size: number;
  #pointer: bigint;
  #freed = false;

  private constructor(device: number, size: number, pointer: bigint) {
    this.device = device;
    this.size = size;
    this.#pointer = pointer;
  }

  static alloc(size: number, options: { device?: number } = {}): DeviceBuffer {
    const device = options.device ?? 0;
    if (!Number.isSafeInteger(size) || size <= 0) {
      throw new NativeError(`DeviceBuffer size must be a positive integer, got ${size}`, { code: 'INVALID' });
    }
    const a = requireAddon();
    const status = loadCuda();
    if (!status.available) {
      throw new NativeError(`no CUDA device: ${status.reason}`, { code: 'UNAVAILABLE' });
    }
    return new DeviceBuffer(
      device,
      size,
      call(() => a.cudaMalloc(device, size)),
    );
  }

  get pointer(): bigint {
    this.#check();
    return this.#pointer;
  }

  get freed(): boolean {
    return this.#freed;
  }

  /** Copies `src` to device memory at `offset`. */
  async copyFromHost(src: ArrayBufferView, offset = 0): Promise<void> {
    this.#range(offset, src.byteLength);
    await callAsync(() => requireAddon().cudaCopyToDevice(this.device, this.#pointer + BigInt(offset), src));
  }

  /** Copies device memory at `offset` into `dst` (all of it). */
  async copyToHost(dst: ArrayBufferView, offset = 0): Promise<void> {
    this.#range(offset, dst.byteLength);
    await callAsync(() => requireAddon().cudaCopyToHost(this.device, dst, this.#pointer + BigInt(offset)));
  }

  /** Reads `length` bytes at `offset` into a new host array. */
  async toHost(offset = 0, length = this.size - offset): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.copyToHost(out, offset);
    return out;
  }

  fill(value: number, offset = 0, length = this.size - offset): void {
    this.#range(offset, length);
    call(() => requireAddon().cudaMemset(this.device, this.#pointer + BigInt(offset), value, length));
  }

  /** Releases the memory. Idempotent. */
  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    call(() => requireAddon().cudaFree(this.device, this.#pointer));
  }

  #check(): void {
    if (this.#freed) throw new NativeError('the DeviceBuffer was freed', { code: 'CLOSED' });
  }

  #range(offset: number, length: number): void {
    this.#check();
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new NativeError(`range ${offset}+${length} exceeds the ${this.size}-byte DeviceBuffer`, {
        code: 'INVALID',
      });
    }
  }
}

/** Where a pointer lives, per the CUDA driver. */
export function pointerInfo(pointer: bigint): ReturnType<Addon['cudaPointerInfo']> {
  return call(() => requireAddon().cudaPointerInfo(pointer));
}

// ------------------------------------------------------------------ cuFile

/** The cuFile driver (process-wide). `open()` loads libcufile and opens the driver. */
export const cufile = {
  open(): void {
    const s = loadCufile();
    if (!s.available)
      throw new NativeError(`libcufile is not available: ${s.reason}`, { code: 'UNAVAILABLE' });
    call(() => requireAddon().cufileDriverOpen());
  },
  close(): void {
    call(() => requireAddon().cufileDriverClose());
  },
  /** Registers an open fd (opened with O_DIRECT for true GDS) and returns its cuFile handle. */
  registerHandle(fd: number): CufileHandle {
    return new CufileHandle(
      fd,
      call(() => requireAddon().cufileHandleRegister(fd)),
    );
  },
  /** Pre-registers device memory so cuFile skips its bounce buffers. */
  registerBuffer(buffer: DeviceBuffer, flags = 0): void {
    call(() => requireAddon().cufileBufRegister(buffer.pointer, buffer.size, flags));
  },
  deregisterBuffer(buffer: DeviceBuffer): void {
    call(() => requireAddon().cufileBufDeregister(buffer.pointer));
  },
};

export class CufileHandle {
  readonly fd: number;
  #handle: bigint | undefined;
  constructor(fd: number, handle: bigint) {
    this.fd = fd;
    this.#handle = handle;
  }

  #h(): bigint {
    if (this.#handle === undefined)
      throw new NativeError('the cuFile handle was deregistered', { code: 'CLOSED' });
    return this.#handle;
  }

  /** Reads `size` bytes at `fileOffset` into device memory at `bufferOffset`; resolves to bytes read. */
  read(target: DeviceBuffer, size: number, fileOffset: number, bufferOffset = 0): Promise<number> {
    return callAsync(() =>
      requireAddon().cufileIo(
        false,
        target.device,
        this.#h(),
        target.pointer,
        size,
        fileOffset,
        bufferOffset,
      ),
    );
  }

  write(source: DeviceBuffer, size: number, fileOffset: number, bufferOffset = 0): Promise<number> {
    return callAsync(() =>
      requireAddon().cufileIo(true, source.device, this.#h(), source.pointer, size, fileOffset, bufferOffset),
    );
  }

  /** Reads into host memory through cuFile (compat mode or a cuFile with host-memory support). */
  readHost(target: Uint8Array, fileOffset: number): Promise<number> {
    const a = requireAddon();
    return callAsync(() =>
      a.cufileIo(false, -1, this.#h(), a.addressOf(target), target.byteLength, fileOffset, 0, target),
    );
  }

  deregister(): void {
    if (this.#handle === undefined) return;
    const h = this.#handle;
    this.#handle = undefined;
    call(() => requireAddon().cufileHandleDeregister(h));
  }
}

// ------------------------------------------------------------------ 3FS USRBIO

/** A shared-memory I/O buffer registered with 3FS (hf3fs_iovcreate). */
export class Hf3fsIov {
  readonly raw: unknown;
  /** The iov's memory; detached by `destroy()`. */
  readonly buffer: ArrayBuffer;
  readonly size: number;
  #alive = true;
  constructor(mountPoint: string, size: number, options: { blockSize?: number; numa?: number } = {}) {
    const r = call(() =>
      requireAddon().hf3fsIovCreate(mountPoint, size, options.blockSize ?? 0, options.numa ?? -1),
    );
    this.raw = r.iov;
    this.buffer = r.buffer;
    this.size = size;
  }
  bytes(offset = 0, length = this.size - offset): Uint8Array {
    return new Uint8Array(this.buffer, offset, length);
  }
  destroy(): void {
    if (!this.#alive) return;
    this.#alive = false;
    call(() => requireAddon().hf3fsIovDestroy(this.raw, this.buffer));
  }
}

export interface Hf3fsIorOptions {
  readonly entries: number;
  readonly forRead: boolean;
  /** >0: the worker takes exactly ioDepth ios at a time; 0: ASAP; <0: ASAP, at most -ioDepth at a time. */
  readonly ioDepth?: number;
  readonly timeoutMs?: number;
  readonly numa?: number;
  readonly flags?: number;
}

/**
 * An I/O ring (hf3fs_iorcreate4). USRBIO rings are not thread safe: prepare from one
 * thread (this JS thread); waits run on a worker and must not overlap for one ring.
 */
export class Hf3fsIor {
  readonly raw: unknown;
  readonly entries: number;
  readonly forRead: boolean;
  readonly ioDepth: number;
  #alive = true;
  #waiting = false;
  constructor(mountPoint: string, options: Hf3fsIorOptions) {
    this.entries = options.entries;
    this.forRead = options.forRead;
    this.ioDepth = options.ioDepth ?? 0;
    this.raw = call(() =>
      requireAddon().hf3fsIorCreate(
        mountPoint,
        options.entries,
        options.forRead,
        this.ioDepth,
        options.timeoutMs ?? 0,
        options.numa ?? -1,
        options.flags ?? 0,
      ),
    );
  }
  /** Queues one io; returns its index. `iovOffset` locates the data in the iov. */
  prep(
    iov: Hf3fsIov,
    fd: number,
    fileOffset: number,
    length: number,
    iovOffset: number,
    userdata = 0,
  ): number {
    return call(() =>
      requireAddon().hf3fsPrepIo(
        this.raw,
        iov.raw,
        this.forRead,
        iovOffset,
        fd,
        fileOffset,
        length,
        userdata,
      ),
    );
  }
  submit(): void {
    call(() => requireAddon().hf3fsSubmitIos(this.raw));
  }
  /**
   * Waits for at least `minResults` completions (at most `maxResults`); timeoutMs < 0 waits forever.
   * One wait per ring at a time: a second one while the first runs is refused (code BUSY),
   * since two waiters would split the completions between them unpredictably.
   */
  async wait(maxResults: number, minResults: number, timeoutMs = -1): Promise<Completion[]> {
    if (this.#waiting) {
      throw new NativeError('hf3fs_wait_for_ios: another wait is in progress on this ring', { code: 'BUSY' });
    }
    this.#waiting = true;
    try {
      return await callAsync(() =>
        requireAddon().hf3fsWaitForIos(this.raw, maxResults, minResults, timeoutMs),
      );
    } finally {
      this.#waiting = false;
    }
  }
  /** Whether a wait is in progress. */
  get waiting(): boolean {
    return this.#waiting;
  }
  destroy(): void {
    if (!this.#alive) return;
    if (this.#waiting) {
      throw new NativeError('an ior cannot be destroyed while a wait runs on it', { code: 'BUSY' });
    }
    this.#alive = false;
    call(() => requireAddon().hf3fsIorDestroy(this.raw));
  }
}

export const usrbio = {
  /** The 3FS mount point a path lies on, or null. */
  extractMountPoint(path: string): string | null {
    return call(() => requireAddon().hf3fsExtractMountPoint(path));
  },
  isHf3fs(fd: number): boolean {
    return call(() => requireAddon().hf3fsIsHf3fs(fd));
  },
  /** hf3fs_reg_fd: its positive-errno failure becomes a NativeError with `errno`. */
  registerFd(fd: number, flags = 0): void {
    call(() => requireAddon().hf3fsRegFd(fd, flags));
  },
  deregisterFd(fd: number): void {
    call(() => requireAddon().hf3fsDeregFd(fd));
  },
};

// ------------------------------------------------------------------ I/O pool

export interface IoOp {
  readonly fd: number;
  readonly buffer: ArrayBufferView;
  readonly position: number;
  readonly write?: boolean;
}

/**
 * Native threads doing positioned reads and writes; the event loop never waits on
 * them. Large transfers are split into `chunkSize` pieces that run in parallel.
 */
export class IoPool {
  readonly threads: number;
  readonly chunkSize: number;
  #pool: RawPool;

  constructor(options: { threads?: number; chunkSize?: number } = {}) {
    const a = requireAddon();
    this.threads = options.threads ?? 4;
    this.chunkSize = options.chunkSize ?? 4 * 1024 * 1024;
    this.#pool = call(() => new a.Pool(this.threads));
  }

  /** Runs the ops in parallel; resolves to the bytes each moved (a read stops at end of file). */
  run(ops: readonly IoOp[]): Promise<number[]> {
    return callAsync(() => this.#pool.run(ops.map((o) => [o.fd, o.buffer, o.position, o.write === true])));
  }

  /** Fills `target` from `position`; resolves to the bytes read (fewer at end of file). */
  async read(fd: number, target: ArrayBufferView, position: number): Promise<number> {
    const pieces = this.#split(fd, target, position, false);
    const counts = await this.run(pieces);
    let total = 0;
    for (let i = 0; i < counts.length; i++) {
      total += counts[i];
      if (counts[i] < pieces[i].buffer.byteLength) break; // end of file inside this piece
    }
    return total;
  }

  /** Writes all of `source` at `position`. */
  async write(fd: number, source: ArrayBufferView, position: number): Promise<number> {
    const counts = await this.run(this.#split(fd, source, position, true));
    return counts.reduce((s, n) => s + n, 0);
  }

  close(): void {
    this.#pool.close();
  }

  #split(fd: number, view: ArrayBufferView, position: number, write: boolean): IoOp[] {
    const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    const ops: IoOp[] = [];
    for (let off = 0; off < bytes.byteLength || ops.length === 0; off += this.chunkSize) {
      const len = Math.min(this.chunkSize, bytes.byteLength - off);
      ops.push({ fd, buffer: bytes.subarray(off, off + len), position: position + off, write });
      if (len <= 0) break;
    }
    return ops;
  }
}

/** Host memory aligned for O_DIRECT (default 4 KiB), freed by the garbage collector. */
export function alignedBuffer(size: number, alignment = 4096): Uint8Array {
  return new Uint8Array(call(() => requireAddon().alignedBuffer(size, alignment)));
}

/** O_DIRECT's value here, or 0 where the platform or addon lacks it. */
export function oDirectFlag(): number {
  return loadAddon()?.constants.O_DIRECT ?? 0;
}

/** open(2) with raw flags (fs.open rejects some, e.g. O_DIRECT on older Node). */
export function openFile(path: string, flags: number, mode = 0o644): number {
  return call(() => requireAddon().openFile(path, flags, mode));
}
