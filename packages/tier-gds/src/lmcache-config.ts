/**
 * Reads an LMCache YAML config (LMCACHE_CONFIG_FILE) into tier options, so a
 * deployment can point tierkit at the same cache LMCache uses:
 *
 *   chunk_size: 256
 *   gds_path: "/mnt/gds/cache"              # or "a,b" for several
 *   cufile_buffer_size: 8192                # MiB
 *   extra_config:
 *     use_cufile: true                      # or "true"/"false"
 *     remote_storage_plugin.hf3fs.primary.base_path: "/3fs/stage/kv"
 *     hf3fs_mount_point: "/3fs/stage"
 *     hf3fs_iov_size: 209715200
 *   remote_storage_plugins: ["hf3fs.primary"]
 */
import { readFile } from 'node:fs/promises';
import { TierError } from '@tierkit/tier-core';
import { parse } from 'yaml';
import type { GdsTierOptions, UseCufile } from './gds.js';

/** A 3FS plugin instance as LMCache configures it (values as written, validated by tier-3fs). */
export interface LmcacheHf3fsConfig {
  /** The plugin name, e.g. "hf3fs" or "hf3fs.primary". */
  readonly plugin: string;
  readonly mountPoint?: string;
  /** Comma-separated or list. */
  readonly basePath?: string;
  readonly iovSize?: unknown;
  readonly iorEntries?: unknown;
  readonly ioDepth?: unknown;
  readonly numaId?: unknown;
  readonly ioThreadNum?: unknown;
}

export interface LmcacheConfig {
  readonly chunkSize?: number;
  readonly gdsPath?: string;
  readonly cufileBufferSize?: number;
  readonly useCufile?: UseCufile;
  readonly useDirectIo?: boolean;
  readonly diskIoThreads?: number;
  readonly remoteStoragePlugins: readonly string[];
  readonly hf3fs: readonly LmcacheHf3fsConfig[];
  /** The whole parsed document, for keys tierkit does not interpret. */
  readonly raw: Record<string, unknown>;
}

function bad(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', `LMCache config: ${message}`, { retryable: false });
}

function num(v: unknown, name: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const n = typeof v === 'string' ? Number(v.trim()) : v;
  if (typeof n !== 'number' || !Number.isFinite(n))
    throw bad(`${name} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

function bool(v: unknown, name: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'boolean') return v;
  // LMCache: a string is true only when it is "true" (any case).
  if (typeof v === 'string') return v.trim().toLowerCase() === 'true';
  throw bad(`${name} must be a boolean, got ${JSON.stringify(v)}`);
}

/** Parses LMCache YAML text. Unknown keys are kept in `raw`. */
export function parseLmcacheConfig(text: string): LmcacheConfig {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw bad(`not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) doc = {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw bad('the document must be a mapping');
  const raw = doc as Record<string, unknown>;
  const extra = (raw.extra_config ?? {}) as Record<string, unknown>;
  if (typeof extra !== 'object' || Array.isArray(extra)) throw bad('extra_config must be a mapping');

  const gds = raw.gds_path;
  if (gds !== undefined && gds !== null && typeof gds !== 'string') throw bad('gds_path must be a string');
  const useCufile = bool(extra.use_cufile ?? raw.use_cufile ?? extra.use_gds ?? raw.use_gds, 'use_cufile');
  const plugins = raw.remote_storage_plugins ?? [];
  if (!Array.isArray(plugins) || plugins.some((p) => typeof p !== 'string')) {
    throw bad('remote_storage_plugins must be a list of names');
  }
  const hf3fs: LmcacheHf3fsConfig[] = [];
  for (const plugin of plugins as string[]) {
    if (plugin !== 'hf3fs' && !plugin.startsWith('hf3fs.')) continue;
    const base = extra[`remote_storage_plugin.${plugin}.base_path`] ?? extra.hf3fs_base_path;
    hf3fs.push({
      plugin,
      mountPoint: extra.hf3fs_mount_point as string | undefined,
      basePath: Array.isArray(base) ? base.join(',') : (base as string | undefined),
      iovSize: extra.hf3fs_iov_size,
      iorEntries: extra.hf3fs_ior_entries,
      ioDepth: extra.hf3fs_io_depth,
      numaId: extra.hf3fs_numa_id,
      ioThreadNum: extra.hf3fs_io_thread_num,
    });
  }
  // The legacy form: remote_url: "hf3fs:///3fs/stage/kv" with hf3fs_* in extra_config.
  if (typeof raw.remote_url === 'string' && raw.remote_url.startsWith('hf3fs://')) {
    hf3fs.push({
      plugin: 'hf3fs',
      mountPoint: extra.hf3fs_mount_point as string | undefined,
      basePath: raw.remote_url.slice('hf3fs://'.length),
      iovSize: extra.hf3fs_iov_size,
      iorEntries: extra.hf3fs_ior_entries,
      ioDepth: extra.hf3fs_io_depth,
      numaId: extra.hf3fs_numa_id,
      ioThreadNum: extra.hf3fs_io_thread_num,
    });
  }
  const chunkSize = num(raw.chunk_size, 'chunk_size');
  const bufferSize = num(raw.cufile_buffer_size ?? raw.gds_buffer_size, 'cufile_buffer_size');
  const useDirectIo = bool(extra.use_direct_io, 'use_direct_io');
  const threads = num(extra.disk_io_threads, 'disk_io_threads');
  return {
    ...(chunkSize !== undefined ? { chunkSize } : {}),
    ...(typeof gds === 'string' ? { gdsPath: gds } : {}),
    ...(bufferSize !== undefined ? { cufileBufferSize: bufferSize } : {}),
    ...(useCufile !== undefined ? { useCufile: useCufile ? 'on' : 'off' } : {}),
    ...(useDirectIo !== undefined ? { useDirectIo } : {}),
    ...(threads !== undefined ? { diskIoThreads: threads } : {}),
    remoteStoragePlugins: plugins as string[],
    hf3fs,
    raw,
  };
}

/** Reads and parses an LMCache YAML file. */
export async function loadLmcacheConfig(file: string): Promise<LmcacheConfig> {
  return parseLmcacheConfig(await readFile(file, 'utf8'));
}

/** GdsTier options from an LMCache config; `gds_path` is required. */
export function gdsOptionsFromLmcache(
  config: LmcacheConfig,
  overrides: Partial<GdsTierOptions> = {},
): GdsTierOptions {
  if (!config.gdsPath) throw bad('gds_path is not set');
  return {
    gdsPath: config.gdsPath,
    ...(config.cufileBufferSize !== undefined ? { cufileBufferSize: config.cufileBufferSize } : {}),
    ...(config.useCufile !== undefined ? { useCufile: config.useCufile } : {}),
    ...(config.useDirectIo !== undefined ? { useDirectIo: config.useDirectIo } : {}),
    ...(config.diskIoThreads !== undefined && config.diskIoThreads > 0
      ? { ioThreads: config.diskIoThreads }
      : {}),
    ...(config.chunkSize !== undefined ? { chunkSize: config.chunkSize } : {}),
    ...overrides,
  };
}
