/**
 * LMCache's FS-connector layout (the format lives in @tierkit/lmcache) as a
 * FileLayout: `<base>/<key, "/" as "-SEP-">.data`, the base path chosen by
 * `abs(chunk_hash) % n`, and with `saveChunkMeta` (LMCache's default) the 28-byte
 * RemoteMetadata before the data.
 *
 * 'tierkit' naming (the default) keeps any key reversible: `<quote(key)>.data`,
 * no header. Keys that are not LMCache keys pick their base path by SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileLayout, HeaderInfo } from '@tierkit/lmcache';
import {
  decodeRemoteMetadata,
  encodeRemoteMetadata,
  FS_DATA_SUFFIX,
  FS_PATH_SEPARATOR,
  formatCacheKey,
  fsBasePathIndex,
  gdsTensorFor,
  KEY_DTYPES,
  lmcacheInvalid,
  MEMORY_FORMATS,
  pyQuote,
  pyUnquote,
  REMOTE_DTYPE_CODE,
  REMOTE_METADATA_SIZE,
  type RemoteMetadata,
  type TensorDtype,
  tensorBytes,
  tryParseCacheKey,
} from '@tierkit/lmcache';
import type { SourceMeta } from '@tierkit/tier-core';

export type Hf3fsNaming = 'tierkit' | 'lmcache';

/** What a writer says of a chunk's bytes (RemoteMetadata needs four dimensions). */
export interface FsTensor {
  readonly dtype: TensorDtype;
  readonly shape: readonly [number, number, number, number];
  readonly fmt: number;
}

function canonical(key: string): string {
  const k = tryParseCacheKey(key);
  return k ? formatCacheKey(k) : key;
}

export class FsConnectorLayout implements FileLayout {
  readonly headerSize: number;
  readonly saveChunkMeta: boolean;
  /** Present only with RemoteMetadata headers (a headerless file has nothing to encode or decode). */
  readonly encodeHeader?: FileLayout['encodeHeader'];
  readonly decodeHeader?: FileLayout['decodeHeader'];
  readonly #kvShape?: readonly number[];

  constructor(
    readonly basePaths: readonly string[],
    readonly naming: Hf3fsNaming,
    options: { saveChunkMeta?: boolean; kvShape?: readonly number[] } = {},
  ) {
    this.saveChunkMeta = naming === 'lmcache' && (options.saveChunkMeta ?? true);
    this.headerSize = this.saveChunkMeta ? REMOTE_METADATA_SIZE : 0;
    this.#kvShape = options.kvShape;
    if (this.saveChunkMeta) {
      this.encodeHeader = (size: number, _source: SourceMeta | undefined, key: string, describe?: unknown) =>
        encodeRemoteMetadata(this.remoteMetadataFor(key, size, describe));
      this.decodeHeader = (header: Uint8Array): HeaderInfo | undefined => {
        const m = decodeRemoteMetadata(header);
        return m && m.length >= 0 ? { size: m.length } : undefined;
      };
    }
  }

  fileName(key: string): string {
    if (this.naming === 'lmcache') return canonical(key).split('/').join(FS_PATH_SEPARATOR) + FS_DATA_SUFFIX;
    return pyQuote(key) + FS_DATA_SUFFIX;
  }

  baseIndex(key: string): number {
    const n = this.basePaths.length;
    if (n === 1) return 0;
    const k = tryParseCacheKey(key);
    if (k) return fsBasePathIndex(k, n);
    return Number.parseInt(createHash('sha256').update(key).digest('hex').slice(0, 8), 16) % n;
  }

  paths(key: string): string[] {
    const first = this.baseIndex(key);
    const name = this.fileName(key);
    return this.basePaths.map((_, i) => join(this.basePaths[(first + i) % this.basePaths.length], name));
  }

  tempPath(path: string): string {
    // Not ending in .data, so neither LMCache's list nor our scan ever sees it.
    return `${path.slice(0, -FS_DATA_SUFFIX.length)}.${randomBytes(4).toString('hex')}.tmp`;
  }

  /** RemoteMetadata for a write: the caller's tensor, else one from the key's dtype. */
  remoteMetadataFor(key: string, size: number, describe?: unknown): RemoteMetadata {
    if (describe) {
      const t = describe as FsTensor;
      if (tensorBytes(t.dtype, t.shape) !== size) {
        throw lmcacheInvalid(
          `'${key}': ${size} bytes written, the tensor described holds ${tensorBytes(t.dtype, t.shape)}`,
        );
      }
      return { length: size, fmt: t.fmt, dtype: t.dtype, shape: [...t.shape] as FsTensor['shape'] };
    }
    const k = tryParseCacheKey(key);
    const dtype = k?.dtype ? KEY_DTYPES[k.dtype] : undefined;
    if (dtype && REMOTE_DTYPE_CODE[dtype] !== undefined) {
      const t = gdsTensorFor(dtype, size, this.#kvShape ? { kvShape: this.#kvShape } : {});
      if (t.shape.length === 4)
        return { length: size, fmt: t.fmt, dtype: t.dtype, shape: t.shape as FsTensor['shape'] };
    }
    // Bytes: LMCache's convention for a byte object is [n, 0, 0, 0].
    return { length: size, fmt: MEMORY_FORMATS.BINARY, dtype: 'U8', shape: [size, 0, 0, 0] };
  }

  keyOfName(name: string): string | undefined {
    if (!name.endsWith(FS_DATA_SUFFIX)) return undefined;
    const stem = name.slice(0, -FS_DATA_SUFFIX.length);
    try {
      return this.naming === 'lmcache' ? canonical(stem.split(FS_PATH_SEPARATOR).join('/')) : pyUnquote(stem);
    } catch {
      return undefined;
    }
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
        const key = this.keyOfName(name);
        // Only a file where its key belongs (a stray file elsewhere is not served).
        if (key !== undefined && this.paths(key).includes(join(base, name)))
          yield { key, path: join(base, name) };
      }
    }
  }
}
