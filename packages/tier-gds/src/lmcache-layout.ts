/**
 * LMCache's GDS backend layout as a FileLayout (the format itself lives in
 * @tierkit/lmcache): an LMCache key's files are exactly where LMCache's
 * `_key_to_path` puts them, so LMCache and tierkit share one cache directory.
 *
 * Keys that are not LMCache keys (any other tierkit key) are stored in the same
 * shape under two levels taken from their SHA-256: LMCache's scan skips them as
 * names it cannot parse.
 */
import { createHash } from 'node:crypto';
import { open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  decodeGdsHeader,
  encodeGdsHeader,
  formatCacheKey,
  GDS_DATA_SUFFIX,
  GDS_HEADER_SIZE,
  GDS_METADATA_SUFFIX,
  type GdsHeader,
  type GdsTensor,
  gdsDataPath,
  gdsDataSize,
  gdsHeaderDataBytes,
  gdsTensorFor,
  KEY_DTYPES,
  lmcacheInvalid,
  MEMORY_FORMATS,
  pyQuote,
  pyUnquote,
  tryParseCacheKey,
} from '@tierkit/lmcache';
import type { SourceMeta } from '@tierkit/tier-core';
import { type FileLayout, type HeaderInfo, tempSuffix } from './file-tier.js';

export interface LmcacheGdsLayoutOptions {
  /** Every gds_path directory (LMCache's comma-separated list, split); reads look in all. */
  readonly paths: readonly string[];
  /** The directory writes go to (LMCache's by_gpu sharding: paths[device % n]); default the first. */
  readonly writePath?: string;
  /** `.kvcache.safetensors`, or `.weka1` on WekaFS (LMCache's choice there). */
  readonly dataSuffix?: string;
  /**
   * The full chunk's shape, e.g. [2, layers, 256, hidden] (KV_2LTD), recorded for
   * plain writes under LMCache keys (the token count fitted to the bytes).
   */
  readonly kvShape?: readonly number[];
  /** MemoryFormat recorded for plain writes (default 1, KV_2LTD). */
  readonly fmt?: number;
}

/** The canonical file stem of a key: LMCache's to_string for its keys, the key itself otherwise. */
export function canonicalKey(key: string): string {
  const k = tryParseCacheKey(key);
  return k ? formatCacheKey(k) : key;
}

export class LmcacheGdsLayout implements FileLayout {
  readonly headerSize = GDS_HEADER_SIZE;
  readonly roots: readonly string[];
  readonly writeRoot: string;
  readonly dataSuffix: string;
  readonly kvShape?: readonly number[];
  readonly fmt: number;

  constructor(options: LmcacheGdsLayoutOptions) {
    if (options.paths.length === 0) throw lmcacheInvalid('at least one gds path is needed');
    this.roots = [...options.paths];
    this.writeRoot = options.writePath ?? this.roots[0];
    if (!this.roots.includes(this.writeRoot))
      throw lmcacheInvalid(`write path ${this.writeRoot} is not one of the gds paths`);
    this.dataSuffix = options.dataSuffix ?? GDS_DATA_SUFFIX;
    if (options.kvShape) this.kvShape = [...options.kvShape];
    this.fmt = options.fmt ?? MEMORY_FORMATS.KV_2LTD;
  }

  /** The data file of `key` under `root`. */
  fileOf(key: string, root: string): string {
    const k = tryParseCacheKey(key);
    if (k) return gdsDataPath(root, k, this.dataSuffix);
    const h = createHash('sha256').update(key).digest('hex');
    return join(root, h.slice(0, 2), h.slice(2, 4), pyQuote(key) + this.dataSuffix);
  }

  paths(key: string): string[] {
    return [this.writeRoot, ...this.roots.filter((r) => r !== this.writeRoot)].map((r) =>
      this.fileOf(key, r),
    );
  }

  tempPath(path: string): string {
    return path + tempSuffix();
  }

  /** The tensor recorded for a write: the caller's, else one derived from the key's dtype. */
  tensorFor(key: string, size: number, describe?: unknown): GdsTensor {
    if (describe) {
      const t = describe as GdsTensor;
      if (gdsDataSize(t) !== size) {
        throw lmcacheInvalid(`'${key}': ${size} bytes written, the tensor described holds ${gdsDataSize(t)}`);
      }
      return t;
    }
    const k = tryParseCacheKey(key);
    const dtype = k?.dtype ? KEY_DTYPES[k.dtype] : undefined;
    if (!dtype) return { dtype: 'U8', shape: [size], fmt: MEMORY_FORMATS.BINARY };
    return gdsTensorFor(dtype, size, { ...(this.kvShape ? { kvShape: this.kvShape } : {}), fmt: this.fmt });
  }

  encodeHeader(size: number, source: SourceMeta | undefined, key: string, describe?: unknown): Uint8Array {
    const metadata: Record<string, string> = {};
    if (source) metadata.tierkit_source = JSON.stringify(source);
    return encodeGdsHeader(this.tensorFor(key, size, describe), metadata);
  }

  decodeHeader(header: Uint8Array): HeaderInfo | undefined {
    const meta = decodeGdsHeader(header);
    if (!meta) return undefined;
    return { size: gdsHeaderDataBytes(meta), ...sourceOf(meta) };
  }

  async afterPublish(path: string, header: Uint8Array | undefined): Promise<void> {
    if (header) await writeMetadataFile(path, header);
  }

  async beforeDelete(path: string): Promise<void> {
    // The .metadata first: LMCache treats it as "data present".
    await rm(path + GDS_METADATA_SUFFIX, { force: true });
  }

  /** The key a file found at `path` under `root` stores, when it is where that key belongs. */
  keyAt(root: string, path: string, name: string): string | undefined {
    if (!name.endsWith(this.dataSuffix)) return undefined;
    const key = canonicalKey(pyUnquote(name.slice(0, -this.dataSuffix.length)));
    return this.fileOf(key, root) === path ? key : undefined;
  }

  async *scan(): AsyncIterable<{ key: string; path: string }> {
    for (const root of this.roots) {
      for await (const { dir, name } of walkTwoLevels(root)) {
        const path = join(dir, name);
        const key = this.keyAt(root, path, name);
        if (key !== undefined) yield { key, path };
      }
    }
  }
}

function sourceOf(meta: GdsHeader): { source?: SourceMeta } {
  const raw = meta.metadata.tierkit_source;
  if (typeof raw !== 'string') return {};
  try {
    return { source: JSON.parse(raw) };
  } catch {
    return {};
  }
}

/** save_metadata: the .metadata companion of a data file, written under a temporary name and renamed. */
export async function writeMetadataFile(dataPath: string, header: Uint8Array): Promise<void> {
  const meta = dataPath + GDS_METADATA_SUFFIX;
  const temp = meta + tempSuffix();
  const fh = await open(temp, 'wx');
  try {
    await fh.writeFile(header);
  } catch (err) {
    await fh.close();
    await rm(temp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(temp, meta);
}

/**
 * Every file one or two directory levels below `root` (LMCache's <d[0:2]>/<d[2:4]>/;
 * a hash of one or two decimal digits has a single level).
 */
export async function* walkTwoLevels(
  root: string,
): AsyncIterable<{ dir: string; name: string; depth: number }> {
  const list = async (dir: string) => {
    try {
      return await readdir(dir, { withFileTypes: true });
    } catch {
      return [];
    }
  };
  for (const l1 of await list(root)) {
    if (!l1.isDirectory() || l1.name.length > 2) continue;
    const d1 = join(root, l1.name);
    for (const e of await list(d1)) {
      if (e.isFile()) yield { dir: d1, name: e.name, depth: 1 };
      else if (e.isDirectory() && e.name.length <= 2) {
        const d2 = join(d1, e.name);
        for (const f of await list(d2)) if (f.isFile()) yield { dir: d2, name: f.name, depth: 2 };
      }
    }
  }
}
