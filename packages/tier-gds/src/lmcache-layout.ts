/**
 * LMCache's GDS backend layout, read and written byte-compatibly:
 *
 *   <gds_path>/<h[0:2]>/<h[2:4]>/<quote(key)>.kvcache.safetensors            data file
 *   <gds_path>/<h[0:2]>/<h[2:4]>/<quote(key)>.kvcache.safetensors.metadata   its header alone
 *
 * where h is the key's chunk hash as text and quote() is Python's
 * urllib.parse.quote(s, safe=''). A data file is a 4 KiB safetensors-style header
 * (a little-endian u64 length, then JSON padded with spaces to 4088 bytes)
 * followed by the raw bytes, which therefore start 4 KiB-aligned, as O_DIRECT and
 * cuFile want. Both files are written under a temporary name and renamed.
 */
import { createHash } from 'node:crypto';
import { open, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { SourceMeta } from '@tierkit/tier-core';
import { type FileLayout, type HeaderInfo, tempSuffix } from './file-tier.js';

export const LMCACHE_HEADER_SIZE = 4096;
export const LMCACHE_DATA_SUFFIX = '.kvcache.safetensors';
export const LMCACHE_WEKA_DATA_SUFFIX = '.weka1';
export const LMCACHE_METADATA_SUFFIX = '.metadata';
export const LMCACHE_METADATA_VERSION = '1';

/** The tensor description in an LMCache header. */
export interface LmcacheTensorMeta {
  /** safetensors dtype name: F16, BF16, F32, U8, F8E4M3FN, … */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** LMCache's MemoryFormat value (1 = KV_2LTD …). */
  readonly fmt: number;
  readonly dataOffsets: readonly [number, number];
  readonly metadata: Record<string, string>;
  readonly shapes?: readonly (readonly number[])[];
  readonly dtypes?: readonly string[];
}

/** Python's urllib.parse.quote(s, safe=''): everything but A-Z a-z 0-9 _ . - ~ is %XX. */
export function pyQuote(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function pyUnquote(s: string): string {
  return decodeURIComponent(s);
}

/**
 * The chunk hash LMCache names directories by. An LMCache key string
 * (`fmt@model@world_size@worker_id@chunk_hash[@…]`) carries it as its fifth field;
 * any other key is hashed (SHA-256, hex).
 */
export function chunkHashOf(key: string): string {
  const fields = key.split('@');
  if (fields.length >= 5 && /^-?[0-9a-fA-F]+$/.test(fields[4])) return fields[4];
  return createHash('sha256').update(key).digest('hex');
}

/** Encodes LMCache's 4 KiB header. */
export function encodeLmcacheHeader(meta: LmcacheTensorMeta): Uint8Array {
  const tensor: Record<string, unknown> = {
    dtype: meta.dtype,
    shape: meta.shape,
    data_offsets: meta.dataOffsets,
    fmt: meta.fmt,
    __metadata__: meta.metadata,
  };
  if (meta.shapes && meta.dtypes) {
    tensor.shapes = meta.shapes;
    tensor.dtypes = meta.dtypes;
  }
  const json = Buffer.from(JSON.stringify({ kvcache: tensor }), 'utf8');
  const room = LMCACHE_HEADER_SIZE - 8;
  if (json.byteLength > room)
    throw new RangeError(`LMCache header JSON is ${json.byteLength} bytes, over ${room}`);
  const out = Buffer.alloc(LMCACHE_HEADER_SIZE, 0x20);
  out.writeBigUInt64LE(BigInt(room), 0);
  json.copy(out, 8);
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Decodes LMCache's header; undefined if it is not one. */
export function decodeLmcacheHeader(header: Uint8Array): LmcacheTensorMeta | undefined {
  if (header.byteLength < 8) return undefined;
  const buf = Buffer.from(header.buffer, header.byteOffset, header.byteLength);
  const len = Number(buf.readBigUInt64LE(0));
  if (len <= 0 || len > LMCACHE_HEADER_SIZE - 8 || 8 + len > buf.byteLength) return undefined;
  try {
    const parsed = JSON.parse(
      buf
        .subarray(8, 8 + len)
        .toString('utf8')
        .trimEnd(),
    );
    const t = parsed?.kvcache;
    if (!t || !Array.isArray(t.data_offsets) || t.data_offsets.length !== 2) return undefined;
    const [a, b] = t.data_offsets.map(Number);
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || b < a) return undefined;
    return {
      dtype: String(t.dtype),
      shape: Array.isArray(t.shape) ? t.shape.map(Number) : [],
      fmt: Number(t.fmt),
      dataOffsets: [a, b],
      metadata: typeof t.__metadata__ === 'object' && t.__metadata__ ? t.__metadata__ : {},
      ...(Array.isArray(t.shapes) ? { shapes: t.shapes } : {}),
      ...(Array.isArray(t.dtypes) ? { dtypes: t.dtypes } : {}),
    };
  } catch {
    return undefined;
  }
}

export interface LmcacheGdsLayoutOptions {
  /** The gds_path directories (LMCache's comma-separated list, split). */
  readonly paths: readonly string[];
  /** `.kvcache.safetensors`, or `.weka1` on WekaFS (LMCache's choice there). */
  readonly dataSuffix?: string;
  /** LMCache MemoryFormat to record for objects tierkit writes (default 1). */
  readonly fmt?: number;
}

/** The on-disk layout of LMCache's GDS backend. */
export class LmcacheGdsLayout implements FileLayout {
  readonly headerSize = LMCACHE_HEADER_SIZE;
  readonly roots: readonly string[];
  readonly dataSuffix: string;
  readonly fmt: number;

  constructor(options: LmcacheGdsLayoutOptions) {
    if (options.paths.length === 0) throw new RangeError('at least one gds path is needed');
    this.roots = [...options.paths];
    this.dataSuffix = options.dataSuffix ?? LMCACHE_DATA_SUFFIX;
    this.fmt = options.fmt ?? 1;
  }

  /** The data file of `key` under `root`. */
  fileOf(key: string, root: string): string {
    const h = chunkHashOf(key);
    return join(root, h.slice(0, 2), h.slice(2, 4), pyQuote(key) + this.dataSuffix);
  }

  paths(key: string): string[] {
    if (this.roots.length === 1) return [this.fileOf(key, this.roots[0])];
    // Spread writes over the paths by hash; reads look in every one (LMCache does).
    const first =
      Number.parseInt(createHash('sha256').update(key).digest('hex').slice(0, 8), 16) % this.roots.length;
    return this.roots.map((_, i) => this.fileOf(key, this.roots[(first + i) % this.roots.length]));
  }

  tempPath(path: string): string {
    return path + tempSuffix();
  }

  encodeHeader(size: number, source: SourceMeta | undefined): Uint8Array {
    const metadata: Record<string, string> = { lmcache_version: LMCACHE_METADATA_VERSION };
    if (source) metadata.tierkit_source = JSON.stringify(source);
    return encodeLmcacheHeader({
      dtype: 'U8',
      shape: [size],
      fmt: this.fmt,
      dataOffsets: [0, size],
      metadata,
    });
  }

  decodeHeader(header: Uint8Array): HeaderInfo | undefined {
    const meta = decodeLmcacheHeader(header);
    if (!meta) return undefined;
    let source: SourceMeta | undefined;
    if (meta.metadata.tierkit_source) {
      try {
        source = JSON.parse(meta.metadata.tierkit_source);
      } catch {
        source = undefined;
      }
    }
    return { size: meta.dataOffsets[1] - meta.dataOffsets[0], ...(source ? { source } : {}) };
  }

  async afterPublish(path: string, header: Uint8Array | undefined): Promise<void> {
    if (!header) return;
    const meta = path + LMCACHE_METADATA_SUFFIX;
    const temp = meta + tempSuffix();
    const fh = await open(temp, 'wx');
    try {
      await fh.writeFile(header);
    } finally {
      await fh.close();
    }
    await rename(temp, meta);
  }

  async beforeDelete(path: string): Promise<void> {
    // Metadata first: LMCache's start-up scan trusts a metadata file to mean "data present".
    await rm(path + LMCACHE_METADATA_SUFFIX, { force: true });
  }

  async *scan(): AsyncIterable<{ key: string; path: string }> {
    for (const root of this.roots) {
      for (const l1 of await dirs(root)) {
        for (const l2 of await dirs(join(root, l1))) {
          const dir = join(root, l1, l2);
          let names: string[];
          try {
            names = await readdir(dir);
          } catch {
            continue;
          }
          for (const name of names) {
            if (!name.endsWith(this.dataSuffix)) continue;
            let key: string;
            try {
              key = pyUnquote(name.slice(0, -this.dataSuffix.length));
            } catch {
              continue;
            }
            yield { key, path: join(dir, name) };
          }
        }
      }
    }
  }
}

async function dirs(path: string): Promise<string[]> {
  try {
    const entries = await readdir(path, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && e.name.length === 2).map((e) => e.name);
  } catch {
    return [];
  }
}
