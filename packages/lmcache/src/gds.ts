/**
 * LMCache's GDS backend on disk (lmcache/v1/storage_backend/gds_backend.py):
 *
 *   <gds_path>/<d[0:2]>/<d[2:4]>/<quote(key)>.kvcache.safetensors           header + data
 *   <gds_path>/<d[0:2]>/<d[2:4]>/<quote(key)>.kvcache.safetensors.metadata  the header alone
 *
 * d is `str(chunk_hash)` (signed decimal), quote is urllib.parse.quote(safe="").
 * The header is 4096 bytes: a little-endian u64 length (always 4088), then
 * `json.dumps({"kvcache": {...}})` padded with spaces. Both files are written under
 * `<name>.tmp<8 hex>` and renamed; the data file first, its .metadata after.
 */
import { posix } from 'node:path';
import {
  isMemoryFormat,
  isTensorDtype,
  MEMORY_FORMATS,
  TENSOR_DTYPE_BYTES,
  type TensorDtype,
  tensorBytes,
} from './dtypes.js';
import { lmcacheInvalid } from './errors.js';
import { type CacheEngineKey, chunkHashDecimal, formatCacheKey, parseCacheKey } from './key.js';
import { pyJsonDumps, pyQuote, pyUnquote } from './python.js';

export const GDS_HEADER_SIZE = 4096;
export const GDS_DATA_SUFFIX = '.kvcache.safetensors';
export const GDS_WEKA_DATA_SUFFIX = '.weka1';
export const GDS_METADATA_SUFFIX = '.metadata';
export const GDS_METADATA_VERSION = '1';
/** `.tmp` + 8 hex digits (uuid4().hex[:8]), appended to the final name. */
export const GDS_TEMP_PATTERN = /\.tmp[0-9a-f]{8}$/;

/** The tensor an LMCache GDS entry holds. */
export interface GdsTensor {
  readonly dtype: TensorDtype;
  readonly shape: readonly number[];
  /** MemoryFormat value (1 = KV_2LTD). */
  readonly fmt: number;
  /** Multi-group objects (e.g. DSA dual buffers): per-group shapes and dtypes. */
  readonly shapes?: readonly (readonly number[])[];
  readonly dtypes?: readonly TensorDtype[];
}

/** A decoded header. */
export interface GdsHeader extends GdsTensor {
  readonly dataOffsets: readonly [number, number];
  /** The `__metadata__` block (LMCache writes `{"lmcache_version": "1"}`). */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Why LMCache would not load it (`_read_metadata`), or undefined when it would. */
  readonly unloadable?: string;
}

/** The data size the header promises: the tensor's bytes, or every group's. */
export function gdsDataSize(t: GdsTensor): number {
  if (t.shapes && t.dtypes) return t.shapes.reduce((n, s, i) => n + tensorBytes(t.dtypes![i], s), 0);
  return tensorBytes(t.dtype, t.shape);
}

function checkTensor(t: GdsTensor): void {
  if (!isTensorDtype(t.dtype)) throw lmcacheInvalid(`GDS header: unknown dtype ${JSON.stringify(t.dtype)}`);
  if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw lmcacheInvalid(
      `GDS header: shape must be a list of non-negative integers, got ${JSON.stringify(t.shape)}`,
    );
  }
  if (!isMemoryFormat(t.fmt)) throw lmcacheInvalid(`GDS header: fmt ${t.fmt} is not a MemoryFormat (0..7)`);
  if ((t.shapes === undefined) !== (t.dtypes === undefined))
    throw lmcacheInvalid('GDS header: shapes and dtypes go together');
  if (t.shapes && t.dtypes) {
    if (t.shapes.length !== t.dtypes.length) throw lmcacheInvalid('GDS header: one dtype per group shape');
    for (const d of t.dtypes)
      if (!isTensorDtype(d)) throw lmcacheInvalid(`GDS header: unknown dtype ${JSON.stringify(d)}`);
  }
}

/**
 * pack_metadata: the 4096-byte header, byte for byte as LMCache writes it. Extra
 * `metadata` entries follow `lmcache_version` (LMCache ignores them).
 */
export function encodeGdsHeader(t: GdsTensor, metadata: Readonly<Record<string, string>> = {}): Uint8Array {
  checkTensor(t);
  const size = gdsDataSize(t);
  const tensor: Record<string, unknown> = {
    dtype: t.dtype,
    shape: [...t.shape],
    data_offsets: [0, size],
    fmt: t.fmt,
    __metadata__: { lmcache_version: GDS_METADATA_VERSION, ...metadata },
  };
  if (t.shapes && t.dtypes) {
    tensor.shapes = t.shapes.map((s) => [...s]);
    tensor.dtypes = [...t.dtypes];
  }
  const json = Buffer.from(pyJsonDumps({ kvcache: tensor }), 'utf8');
  const room = GDS_HEADER_SIZE - 8;
  if (json.byteLength > room)
    throw lmcacheInvalid(`GDS header: JSON of ${json.byteLength} bytes exceeds ${room}`);
  const out = Buffer.alloc(GDS_HEADER_SIZE, 0x20);
  out.writeBigUInt64LE(BigInt(room), 0);
  json.copy(out, 8);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * unpack_metadata: undefined where LMCache's reader would raise (not JSON, no
 * kvcache tensor, unknown dtype or fmt, no __metadata__). A header LMCache parses
 * but will not load (another lmcache_version) comes back with `unloadable` set.
 */
export function decodeGdsHeader(header: Uint8Array): GdsHeader | undefined {
  if (header.byteLength < 8) return undefined;
  const buf = Buffer.from(header.buffer, header.byteOffset, header.byteLength);
  const len = buf.readBigUInt64LE(0);
  if (len > BigInt(buf.byteLength - 8)) return undefined;
  let t: Record<string, unknown>;
  try {
    let end = 8 + Number(len);
    while (end > 8 && buf[end - 1] === 0x20) end--;
    const parsed = JSON.parse(buf.subarray(8, end).toString('utf8'));
    t = parsed?.kvcache;
  } catch {
    return undefined;
  }
  if (!t || typeof t !== 'object') return undefined;
  const offsets = t.data_offsets;
  if (!Array.isArray(offsets) || offsets.length < 2 || !offsets.slice(0, 2).every(Number.isSafeInteger))
    return undefined;
  if (!isTensorDtype(t.dtype) || !isMemoryFormat(t.fmt) || !Array.isArray(t.shape)) return undefined;
  if (!t.shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) return undefined;
  if (typeof t.__metadata__ !== 'object' || t.__metadata__ === null) return undefined;
  const multi = Array.isArray(t.shapes) && Array.isArray(t.dtypes);
  if (multi && !(t.dtypes as unknown[]).every(isTensorDtype)) return undefined;
  const metadata = t.__metadata__ as Record<string, unknown>;
  const version = metadata.lmcache_version;
  return {
    dtype: t.dtype,
    shape: t.shape as number[],
    fmt: t.fmt as number,
    dataOffsets: [offsets[0] as number, offsets[1] as number],
    metadata,
    ...(multi ? { shapes: t.shapes as number[][], dtypes: t.dtypes as TensorDtype[] } : {}),
    ...(version !== GDS_METADATA_VERSION
      ? {
          unloadable: `lmcache_version is ${JSON.stringify(version)}, LMCache loads "${GDS_METADATA_VERSION}"`,
        }
      : {}),
  };
}

/** Bytes of data a header says follow it (data_offsets[1] - data_offsets[0]). */
export function gdsHeaderDataBytes(h: GdsHeader): number {
  return h.dataOffsets[1] - h.dataOffsets[0];
}

/** The two directory levels of a key: `str(chunk_hash)[0:2]`, `[2:4]` (either may be short or empty). */
export function gdsHashDirs(key: CacheEngineKey): [string, string] {
  const d = chunkHashDecimal(key.chunkHash);
  return [d.slice(0, 2), d.slice(2, 4)];
}

/** `quote(key.to_string(), safe="") + suffix`: the data file's name. */
export function gdsFileName(key: CacheEngineKey, dataSuffix = GDS_DATA_SUFFIX): string {
  return pyQuote(formatCacheKey(key)) + dataSuffix;
}

/**
 * `_key_to_path`: the data file of `key` under `base`. Python's os.path.join drops
 * nothing for an empty level but adds no empty segment either, so a hash with
 * fewer than three decimal digits lives one level up.
 */
export function gdsDataPath(
  base: string,
  key: CacheEngineKey | string,
  dataSuffix = GDS_DATA_SUFFIX,
): string {
  const k = typeof key === 'string' ? parseCacheKey(key) : key;
  const [l1, l2] = gdsHashDirs(k);
  return posix.join(base, ...[l1, l2].filter((p) => p !== ''), gdsFileName(k, dataSuffix));
}

/** The key a data file name stands for (unquoted); undefined when it is not an LMCache key. */
export function gdsKeyOfFileName(name: string, dataSuffix = GDS_DATA_SUFFIX): CacheEngineKey | undefined {
  if (!name.endsWith(dataSuffix)) return undefined;
  try {
    return parseCacheKey(pyUnquote(name.slice(0, -dataSuffix.length)));
  } catch {
    return undefined;
  }
}

/**
 * The tensor tierkit records for `nbytes` written under an LMCache key when the
 * caller gave no description: with `kvShape` (the full chunk's shape, e.g.
 * [2, layers, 256, hidden] for KV_2LTD), the key's dtype and that shape with the
 * token count fitted to the bytes, as LMCache stores partial chunks. Without a
 * shape that fits, plain bytes (U8, BINARY): a 1-D tensor recorded as a KV
 * format would pass LMCache's lookup and then be handed to its GPU connector as
 * KV data it cannot use.
 */
export function gdsTensorFor(
  dtype: TensorDtype,
  nbytes: number,
  options: { kvShape?: readonly number[]; fmt?: number } = {},
): GdsTensor {
  const el = TENSOR_DTYPE_BYTES[dtype];
  const fmt = options.fmt ?? MEMORY_FORMATS.KV_2LTD;
  if (nbytes % el !== 0) return { dtype: 'U8', shape: [nbytes], fmt: MEMORY_FORMATS.BINARY };
  const s = options.kvShape;
  if (s && (s.length === 4 || s.length === 3)) {
    // The token dimension: [2|1, layers, tokens, hidden], [tokens, 2, hidden] (KV_T2D), [2, tokens, hidden].
    const tokenDim = s.length === 4 ? 2 : fmt === MEMORY_FORMATS.KV_T2D ? 0 : 1;
    const per = s.reduce((n, d, i) => (i === tokenDim ? n : n * d), el);
    if (per > 0 && nbytes % per === 0) {
      const shape = [...s];
      shape[tokenDim] = nbytes / per;
      return { dtype, shape, fmt };
    }
  }
  return { dtype: 'U8', shape: [nbytes], fmt: MEMORY_FORMATS.BINARY };
}
