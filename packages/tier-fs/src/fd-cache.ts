/**
 * Open descriptors of recently read entries, so a hot small read (a KV chunk)
 * costs one positioned read plus one lstat in parallel, instead of open,
 * readlink, fstat, read and close one after the other.
 *
 * A published object is never changed in place (a write renames a new inode
 * over it), so a descriptor always reads one whole version. What can go stale
 * is the *name*: another process (or program) may have replaced or removed the
 * file since it was opened. Every hit therefore lstat()s the key's path while
 * the read runs, and keeps the bytes only if the path still names the same
 * file (device, inode, size, mtime and ctime): the read then happened while the
 * name pointed at this version, which is what a fresh open would have read.
 * This process's own writes, deletes and evictions drop the descriptor at once.
 *
 * Descriptors of files removed elsewhere keep their blocks allocated until
 * closed: idle ones are closed after `idleMs`, and at most `max` are kept.
 */
import type { BigIntStats, promises as fsp } from 'node:fs';

export interface CachedFile {
  readonly fh: fsp.FileHandle;
  readonly size: number;
  readonly etag: string;
  readonly dev: bigint;
  readonly ino: bigint;
  readonly sizeBig: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
  /** Reads in flight on `fh`: it is closed only when this is 0. */
  refs: number;
  stale: boolean;
  lastUsed: number;
}

export class DescriptorCache {
  readonly max: number;
  readonly idleMs: number;
  readonly #files = new Map<string, CachedFile>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(max: number, idleMs: number) {
    this.max = max;
    this.idleMs = idleMs;
  }

  get size(): number {
    return this.#files.size;
  }

  /** The cached descriptor of `key`, taken for one read (give it back with `release`). */
  take(key: string): CachedFile | undefined {
    const f = this.#files.get(key);
    if (!f) return undefined;
    f.refs++;
    f.lastUsed = performance.now();
    return f;
  }

  release(f: CachedFile): void {
    f.refs--;
    if (f.stale && f.refs === 0) void f.fh.close().catch(() => {});
  }

  /** True when `st` (an lstat of the key's path) names the file `f` has open. */
  static same(f: CachedFile, st: BigIntStats): boolean {
    return (
      st.isFile() &&
      st.ino === f.ino &&
      st.dev === f.dev &&
      st.size === f.sizeBig &&
      st.mtimeNs === f.mtimeNs &&
      st.ctimeNs === f.ctimeNs
    );
  }

  /**
   * Keeps `fh` (an fstat of it is `st`) for later reads of `key`. Returns false
   * when the cache does not take it (closed, full of busy descriptors): the
   * caller closes it.
   */
  put(key: string, fh: fsp.FileHandle, st: BigIntStats, etag: string): boolean {
    if (this.#closed || this.max === 0) return false;
    this.invalidate(key);
    if (this.#files.size >= this.max && !this.#evictOne()) return false;
    this.#files.set(key, {
      fh,
      size: Number(st.size),
      etag,
      dev: st.dev,
      ino: st.ino,
      sizeBig: st.size,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
      refs: 0,
      stale: false,
      lastUsed: performance.now(),
    });
    this.#arm();
    return true;
  }

  /** Drops `key`'s descriptor (closed once its reads finish). */
  invalidate(key: string): void {
    const f = this.#files.get(key);
    if (!f) return;
    this.#files.delete(key);
    f.stale = true;
    if (f.refs === 0) void f.fh.close().catch(() => {});
  }

  /** Drops `f` if it is still the cached descriptor of `key`. */
  drop(key: string, f: CachedFile): void {
    if (this.#files.get(key) === f) this.invalidate(key);
    else f.stale = true;
  }

  /** Closes every idle descriptor now; busy ones close when their reads finish. */
  clear(): void {
    for (const key of [...this.#files.keys()]) this.invalidate(key);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.clear();
  }

  /** Closes the least recently used idle descriptor; false if all are busy. */
  #evictOne(): boolean {
    let victim: string | undefined;
    let oldest = Number.POSITIVE_INFINITY;
    for (const [key, f] of this.#files) {
      if (f.refs === 0 && f.lastUsed < oldest) {
        oldest = f.lastUsed;
        victim = key;
      }
    }
    if (victim === undefined) return false;
    this.invalidate(victim);
    return true;
  }

  #arm(): void {
    if (this.#timer || this.idleMs <= 0) return;
    this.#timer = setInterval(() => this.#sweep(), Math.max(50, this.idleMs / 2));
    // Never keeps the process alive.
    this.#timer.unref();
  }

  #sweep(): void {
    const cutoff = performance.now() - this.idleMs;
    for (const [key, f] of this.#files) {
      if (f.refs === 0 && f.lastUsed < cutoff) this.invalidate(key);
    }
    if (this.#files.size === 0 && this.#timer) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
