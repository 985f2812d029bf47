/**
 * Key → path mapping and the checks that keep every operation inside the root.
 * Keys are validated by tier-core's assertKey before they get here; this file
 * adds what only a filesystem needs: no symlink under the root is ever followed.
 */
import { createHash } from 'node:crypto';
import { constants, existsSync, promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join, sep } from 'node:path';
import { TierError } from '@tierkit/tier-core';

/** The one folder under the root that holds tierkit's bookkeeping. */
export const META_DIR = '.tierkit';

// SMB and macOS compare names case-insensitively, and Windows servers drop
// trailing dots and spaces, so '.TierKit. ' would land in the same folder.
const RESERVED_FIRST = /^\.tierkit[. ]*$/i;

/** True when `key` would name something inside `.tierkit/`. */
export function isReservedKey(key: string): boolean {
  const slash = key.indexOf('/');
  return RESERVED_FIRST.test(slash < 0 ? key : key.slice(0, slash));
}

/** Hex SHA-256 of a key: fixed-length, filesystem-safe names for per-key bookkeeping. */
export function keyHash(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** This host, as it may appear in a file name. */
export const HOST = hostname();
export const HOST_SAFE = HOST.replace(/[^A-Za-z0-9.-]/g, '_') || 'host';

// O_NONBLOCK: opening a FIFO planted at a key's path would otherwise wait for a
// writer forever (holding one of libuv's threads); regular files ignore it.
const O_READ = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);
/** errnos of an open that mean "no object here": missing, a folder, a link (loop), a socket. */
const MISS_ON_OPEN = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'EISDIR', 'ENXIO', 'ENODEV', 'EOPNOTSUPP']);
/** Linux exposes the real path of an open descriptor; elsewhere we check the parents before opening. */
const PROC_FD = process.platform === 'linux' && existsSync('/proc/self/fd');

export function isPidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function symlinkError(key: string, tier: string, at: string): TierError {
  return new TierError(
    'UNAVAILABLE',
    `'${key}': '${at}' under the tier root is a symbolic link or not a directory; tier-fs never follows links ` +
      'under its root — remove or replace it with a real directory',
    { key, tier, retryable: false, details: { path: at } },
  );
}

/**
 * The path helpers of one tier root. `real` is the root's realpath, the base
 * every containment check compares against.
 */
export class RootPaths {
  constructor(
    readonly real: string,
    readonly tier: string,
  ) {}

  file(key: string): string {
    return this.real + sep + (sep === '/' ? key : key.split('/').join(sep));
  }

  meta(...parts: string[]): string {
    return join(this.real, META_DIR, ...parts);
  }

  /**
   * Opens `key` for reading without following a link out of the root: the last
   * component with O_NOFOLLOW, the parents checked by the descriptor's real
   * path (Linux) or by lstat before the open. Returns undefined on a miss, or
   * when something under the root points elsewhere.
   */
  async openRead(key: string): Promise<fsp.FileHandle | undefined> {
    const nested = key.includes('/');
    if (nested && !PROC_FD && !(await this.parentsAreReal(key))) return undefined;
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(this.file(key), O_READ);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (MISS_ON_OPEN.has(code ?? '')) return undefined;
      throw err;
    }
    if (nested && PROC_FD) {
      let real: string;
      try {
        real = await fsp.readlink(`/proc/self/fd/${fh.fd}`);
      } catch {
        real = '';
      }
      if (!real.startsWith(this.real + sep)) {
        await fh.close();
        return undefined;
      }
    }
    return fh;
  }

  /** True when every parent directory of `key` is a real directory (no link) inside the root. */
  async parentsAreReal(key: string): Promise<boolean> {
    const segs = key.split('/');
    if (segs.length === 1) return true;
    const parent = this.file(segs.slice(0, -1).join('/'));
    try {
      // Fast path: a realpath equal to the lexical path means no component is a link.
      if ((await fsp.realpath(parent)) === parent) return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ELOOP: a link loop among the parents, which is not a real directory either.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return false;
      throw err;
    }
    // Slow path (e.g. a filesystem that normalises Unicode): check each component.
    let at = this.real;
    for (const seg of segs.slice(0, -1)) {
      at = at + sep + seg;
      try {
        const st = await fsp.lstat(at);
        if (!st.isDirectory()) return false;
      } catch {
        return false;
      }
    }
    return true;
  }

  /**
   * Creates the parent directories of `key`, one level at a time, refusing to
   * pass through a link or a file.
   */
  async ensureParents(key: string, mode = 0o755): Promise<void> {
    const segs = key.split('/');
    if (segs.length === 1) return;
    if (await this.parentsAreReal(key)) return;
    let at = this.real;
    for (const seg of segs.slice(0, -1)) {
      at = at + sep + seg;
      let st = await fsp.lstat(at).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      if (st === undefined) {
        try {
          await fsp.mkdir(at, { mode });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
        st = await fsp.lstat(at);
      }
      if (!st.isDirectory()) throw symlinkError(key, this.tier, at);
    }
  }
}

/** Makes a directory's entries (a rename, an unlink) durable. Not every platform can. */
export async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, constants.O_RDONLY);
    await fh.sync();
  } catch {
    // EINVAL/EISDIR/EPERM on filesystems that cannot sync a directory: nothing more to do.
  } finally {
    await fh?.close().catch(() => {});
  }
}
