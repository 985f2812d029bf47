/**
 * LMCache cache keys (lmcache/utils.py: CacheEngineKey, LayerCacheEngineKey,
 * parse_cache_key), parsed and printed exactly as LMCache does:
 *
 *   current   model@world_size@worker_id@<chunk hash, hex>@dtype[@layer_id][@tag%value...]
 *   legacy    fmt@model@world_size@worker_id@<chunk hash, hex>@dtype[@tag%value...]
 *   legacy-v0 fmt@model@world_size@worker_id@<chunk hash>
 *
 * The chunk hash is a Python int: `int(field, 16)` reading (sign, 0x and
 * underscores allowed), `f"{h:x}"` printing (a negative hash prints as "-ff"),
 * and `str(h)` (signed decimal) where the GDS backend names directories.
 */
import { isKeyDtype, type KeyDtype } from './dtypes.js';
import { lmcacheInvalid } from './errors.js';
import { pyIntParse } from './python.js';

export type KeyFormat = 'current' | 'legacy' | 'legacy-v0';

export interface CacheEngineKey {
  readonly format: KeyFormat;
  /** The leading fmt field of legacy keys ("vllm", "huggingface", …). */
  readonly fmt?: string;
  readonly modelName: string;
  readonly worldSize: bigint;
  readonly workerId: bigint;
  readonly chunkHash: bigint;
  /** Absent only in legacy-v0 keys. */
  readonly dtype?: KeyDtype;
  /** Present for LayerCacheEngineKey. */
  readonly layerId?: bigint;
  /** `lmcache.tag.<name>` request configs, in key order. */
  readonly tags: readonly (readonly [string, string])[];
}

function int10(field: string, what: string, s: string): bigint {
  const v = pyIntParse(field, 10);
  if (v === undefined)
    throw lmcacheInvalid(
      `LMCache key ${JSON.stringify(s)}: ${what} ${JSON.stringify(field)} is not an integer`,
    );
  return v;
}

function tagsOf(parts: string[], s: string): [string, string][] {
  return parts.map((kv) => {
    const at = kv.indexOf('%');
    if (at < 0)
      throw lmcacheInvalid(`LMCache key ${JSON.stringify(s)}: tag ${JSON.stringify(kv)} has no '%'`);
    return [kv.slice(0, at), kv.slice(at + 1)];
  });
}

function hashOf(field: string, s: string): bigint {
  const v = pyIntParse(field, 16);
  if (v === undefined)
    throw lmcacheInvalid(
      `LMCache key ${JSON.stringify(s)}: chunk hash ${JSON.stringify(field)} is not hexadecimal`,
    );
  return v;
}

/** Python's str.isdigit() for ASCII text: a layer id field. */
const ALL_DIGITS = /^[0-9]+$/;

function parseCurrent(s: string, parts: string[]): CacheEngineKey {
  if (!isKeyDtype(parts[4]))
    throw lmcacheInvalid(`LMCache key ${JSON.stringify(s)}: unknown dtype ${JSON.stringify(parts[4])}`);
  const layered = parts.length >= 6 && ALL_DIGITS.test(parts[5]);
  return {
    format: 'current',
    modelName: parts[0],
    worldSize: int10(parts[1], 'world_size', s),
    workerId: int10(parts[2], 'worker_id', s),
    chunkHash: hashOf(parts[3], s),
    dtype: parts[4],
    ...(layered ? { layerId: BigInt(parts[5]) } : {}),
    tags: tagsOf(parts.slice(layered ? 6 : 5), s),
  };
}

/**
 * Parses a key string as LMCache's parse_cache_key does (current format); keys in the
 * older formats are recognised when the current reading fails. Throws INVALID_ARGUMENT
 * naming the field LMCache would refuse.
 */
export function parseCacheKey(s: string): CacheEngineKey {
  const parts = s.split('@');
  if (parts.length < 5)
    throw lmcacheInvalid(`LMCache key ${JSON.stringify(s)}: needs at least 5 '@'-separated fields`);
  try {
    return parseCurrent(s, parts);
  } catch (current) {
    const legacyNums = pyIntParse(parts[2]) !== undefined && pyIntParse(parts[3]) !== undefined;
    if (!legacyNums) throw current;
    if (parts.length === 5) {
      return {
        format: 'legacy-v0',
        fmt: parts[0],
        modelName: parts[1],
        worldSize: int10(parts[2], 'world_size', s),
        workerId: int10(parts[3], 'worker_id', s),
        chunkHash: hashOf(parts[4], s),
        tags: [],
      };
    }
    if (!isKeyDtype(parts[5])) throw current;
    return {
      format: 'legacy',
      fmt: parts[0],
      modelName: parts[1],
      worldSize: int10(parts[2], 'world_size', s),
      workerId: int10(parts[3], 'worker_id', s),
      chunkHash: hashOf(parts[4], s),
      dtype: parts[5],
      tags: tagsOf(parts.slice(6), s),
    };
  }
}

/** parseCacheKey, or undefined for a string that is not an LMCache key. */
export function tryParseCacheKey(s: string): CacheEngineKey | undefined {
  try {
    return parseCacheKey(s);
  } catch {
    return undefined;
  }
}

/** `f"{h:x}"`: lower-case hex, a minus sign for negative hashes. */
export function chunkHashHex(h: bigint): string {
  return h < 0n ? `-${(-h).toString(16)}` : h.toString(16);
}

/** `str(h)`: the signed decimal the GDS backend names its directories by. */
export function chunkHashDecimal(h: bigint): string {
  return h.toString(10);
}

/** The key as LMCache's to_string prints it (canonical: hex without leading zeros, ints in decimal). */
export function formatCacheKey(k: CacheEngineKey): string {
  const tags = k.tags.length ? `@${k.tags.map(([a, b]) => `${a}%${b}`).join('@')}` : '';
  const hash = chunkHashHex(k.chunkHash);
  if (k.format === 'legacy-v0') return `${k.fmt}@${k.modelName}@${k.worldSize}@${k.workerId}@${hash}`;
  if (k.format === 'legacy') {
    return `${k.fmt}@${k.modelName}@${k.worldSize}@${k.workerId}@${hash}@${k.dtype}${tags}`;
  }
  const layer = k.layerId !== undefined ? `@${k.layerId}` : '';
  return `${k.modelName}@${k.worldSize}@${k.workerId}@${hash}@${k.dtype}${layer}${tags}`;
}

/** Builds a current-format key; tags are `lmcache.tag.*` request configs without the prefix. */
export function cacheKey(fields: {
  modelName: string;
  worldSize: number | bigint;
  workerId: number | bigint;
  chunkHash: bigint | number | string;
  dtype: KeyDtype;
  layerId?: number | bigint;
  tags?: readonly (readonly [string, string])[];
}): CacheEngineKey {
  if (fields.modelName.includes('@'))
    throw lmcacheInvalid(`model name ${JSON.stringify(fields.modelName)} contains '@'`);
  const hash =
    typeof fields.chunkHash === 'string'
      ? hashOf(fields.chunkHash, fields.chunkHash)
      : BigInt(fields.chunkHash);
  for (const [k, v] of fields.tags ?? []) {
    if (k.includes('@') || k.includes('%') || v.includes('@')) {
      throw lmcacheInvalid(`tag ${JSON.stringify(`${k}%${v}`)}: names hold no '@' or '%', values no '@'`);
    }
  }
  return {
    format: 'current',
    modelName: fields.modelName,
    worldSize: BigInt(fields.worldSize),
    workerId: BigInt(fields.workerId),
    chunkHash: hash,
    dtype: fields.dtype,
    ...(fields.layerId !== undefined ? { layerId: BigInt(fields.layerId) } : {}),
    tags: (fields.tags ?? []).map(([a, b]) => [a, b] as const),
  };
}
