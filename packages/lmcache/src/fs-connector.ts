/**
 * LMCache's FS connector on disk (lmcache/v1/storage_backend/connector/fs_connector.py,
 * also the file layout of its hf3fs connector):
 *
 *   <base_paths[abs(chunk_hash) % n]>/<key.to_string() with "/" → "-SEP-">.data
 *
 * written to `<name>.tmp` (Path.with_suffix) or `<base>/<relative_tmp_dir>/<name>`
 * and renamed. With `save_chunk_meta` (LMCache's default) the file starts with the
 * 28-byte RemoteMetadata (lmcache/v1/protocol.py): seven little-endian int32
 * `length, fmt, dtype, shape[0..3]`, then `length` bytes of data.
 */
import { posix } from 'node:path';
import { isMemoryFormat, REMOTE_CODE_DTYPE, REMOTE_DTYPE_CODE, type TensorDtype } from './dtypes.js';
import { lmcacheInvalid } from './errors.js';
import { type CacheEngineKey, formatCacheKey, parseCacheKey } from './key.js';

export const FS_DATA_SUFFIX = '.data';
export const FS_PATH_SEPARATOR = '-SEP-';
export const REMOTE_METADATA_SIZE = 28;

const INT32_MAX = 2 ** 31 - 1;
const INT32_MIN = -(2 ** 31);

/** `_get_file_name`. */
export function fsFileName(key: CacheEngineKey | string): string {
  const k = typeof key === 'string' ? parseCacheKey(key) : key;
  return formatCacheKey(k).split('/').join(FS_PATH_SEPARATOR) + FS_DATA_SUFFIX;
}

/** The key string a `.data` file stands for (LMCache's list() returns the stem as is). */
export function fsKeyOfFileName(name: string): CacheEngineKey | undefined {
  if (!name.endsWith(FS_DATA_SUFFIX)) return undefined;
  try {
    return parseCacheKey(name.slice(0, -FS_DATA_SUFFIX.length).split(FS_PATH_SEPARATOR).join('/'));
  } catch {
    return undefined;
  }
}

/** `_get_base_path`: the index of the base path a key lives under. */
export function fsBasePathIndex(key: CacheEngineKey, count: number): number {
  if (count <= 1) return 0;
  const h = key.chunkHash < 0n ? -key.chunkHash : key.chunkHash;
  return Number(h % BigInt(count));
}

/** `_get_file_path`. */
export function fsDataPath(basePaths: readonly string[], key: CacheEngineKey | string): string {
  const k = typeof key === 'string' ? parseCacheKey(key) : key;
  return posix.join(basePaths[fsBasePathIndex(k, basePaths.length)], fsFileName(k));
}

/** `_get_file_and_tmp_path`'s temporary name. */
export function fsTempPath(dataPath: string, relativeTmpDir?: string): string {
  const dir = posix.dirname(dataPath);
  const name = posix.basename(dataPath);
  if (relativeTmpDir !== undefined) return posix.join(dir, relativeTmpDir, name);
  return posix.join(dir, `${name.slice(0, -FS_DATA_SUFFIX.length)}.tmp`);
}

export interface RemoteMetadata {
  /** Data bytes after the header. */
  readonly length: number;
  readonly fmt: number;
  /** null: LMCache's dtype code 0 (no dtype). */
  readonly dtype: TensorDtype | null;
  /** Always four dimensions ([n, 0, 0, 0] for a byte object). */
  readonly shape: readonly [number, number, number, number];
}

/** RemoteMetadata.serialize: refuses what Python's struct.pack("iiiiiii") and the dtype table refuse. */
export function encodeRemoteMetadata(m: RemoteMetadata): Uint8Array {
  if (m.shape.length !== 4)
    throw lmcacheInvalid(`RemoteMetadata: shape must have 4 dimensions, got ${m.shape.length}`);
  const code = m.dtype === null ? 0 : REMOTE_DTYPE_CODE[m.dtype];
  if (code === undefined)
    throw lmcacheInvalid(
      `RemoteMetadata: dtype ${m.dtype} has no code (F16, BF16, F32, F64, U8, F8E4M3FN, F8E5M2)`,
    );
  if (!isMemoryFormat(m.fmt))
    throw lmcacheInvalid(`RemoteMetadata: fmt ${m.fmt} is not a MemoryFormat (0..7)`);
  const fields = [m.length, m.fmt, code, ...m.shape];
  for (const v of fields) {
    if (!Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
      throw lmcacheInvalid(`RemoteMetadata: ${v} does not fit a 32-bit int (struct "i")`);
    }
  }
  const out = Buffer.alloc(REMOTE_METADATA_SIZE);
  for (const [i, v] of fields.entries()) out.writeInt32LE(v, i * 4);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** RemoteMetadata.deserialize: undefined where LMCache would raise (unknown dtype code or fmt). */
export function decodeRemoteMetadata(bytes: Uint8Array): RemoteMetadata | undefined {
  if (bytes.byteLength < REMOTE_METADATA_SIZE) return undefined;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, REMOTE_METADATA_SIZE);
  const v = Array.from({ length: 7 }, (_, i) => b.readInt32LE(i * 4));
  const dtype = REMOTE_CODE_DTYPE[v[2]];
  if (dtype === undefined || !isMemoryFormat(v[1])) return undefined;
  return { length: v[0], fmt: v[1], dtype, shape: [v[3], v[4], v[5], v[6]] };
}
