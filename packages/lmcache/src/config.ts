/**
 * LMCache configuration as LMCache loads it (lmcache/v1/config_base.py
 * load_config_with_overrides, lmcache/v1/config.py _CONFIG_DEFINITIONS):
 *
 *   a file (the path given, else $LMCACHE_CONFIG_FILE): YAML, then every
 *     LMCACHE_<NAME> variable set overrides its key (extra_config as a whole);
 *   no file: the LMCACHE_<NAME> variables alone;
 *   then explicit overrides.
 *
 * Only the options tierkit reads are typed and validated here; every other key is
 * kept in `ignored`. YAML is read as YAML 1.1, as PyYAML reads it (`yes` is true,
 * `1e2` is a string). Values are refused with the key and what it accepts where
 * LMCache would fail or misread them (integers with Python int(): "0x100" and "1e2"
 * are not integers).
 */
import { readFile } from 'node:fs/promises';
import { parseDocument, visit } from 'yaml';
import {
  type ConfigSource,
  toBool,
  toDict,
  toFloat,
  toInt,
  toStr,
  toStrList,
  unquoteEnv,
} from './config-values.js';
import { lmcacheInvalid } from './errors.js';

/** The options tierkit reads, what they accept and their defaults (LMCache's). */
export const LMCACHE_OPTIONS = {
  chunk_size: { kind: 'int', min: 1, default: 256 },
  local_cpu: { kind: 'bool', default: true },
  max_local_cpu_size: { kind: 'float', min: 0, default: 5.0 },
  local_disk: { kind: 'str', default: null },
  max_local_disk_size: { kind: 'float', min: 0, default: 0.0 },
  remote_url: { kind: 'str', default: null },
  remote_storage_plugins: { kind: 'list', default: null },
  gds_path: { kind: 'str', default: null },
  gds_path_sharding: { kind: 'str', allowed: ['by_gpu'], default: 'by_gpu' },
  gds_buffer_size: { kind: 'int', min: 1, default: null },
  cufile_buffer_size: { kind: 'int', min: 1, default: null },
  use_gds: { kind: 'bool', default: true },
  gds_backend: { kind: 'str', allowed: ['cufile', 'hipfile'], default: 'cufile' },
  save_unfull_chunk: { kind: 'bool', default: false },
  use_layerwise: { kind: 'bool', default: false },
  extra_config: { kind: 'dict', default: null },
} as const;

export type LmcacheOptionName = keyof typeof LMCACHE_OPTIONS;
type Def = { kind: string; min?: number; allowed?: readonly string[]; default: unknown };

export interface LmcacheConfig {
  readonly chunkSize: number;
  readonly localCpu: boolean;
  readonly maxLocalCpuSize: number;
  readonly localDisk: string | null;
  readonly maxLocalDiskSize: number;
  readonly remoteUrl: string | null;
  readonly remoteStoragePlugins: readonly string[];
  /** The raw comma-separated gds_path. */
  readonly gdsPath: string | null;
  readonly gdsPathSharding: 'by_gpu';
  /** MiB; gds_buffer_size, or its older spelling cufile_buffer_size. */
  readonly gdsBufferSize: number | null;
  /** use_gds where the user set it; else the older extra_config.use_cufile / use_gds; else undefined (auto). */
  readonly useGds: boolean | undefined;
  readonly gdsBackend: 'cufile' | 'hipfile';
  readonly saveUnfullChunk: boolean;
  readonly useLayerwise: boolean;
  readonly extraConfig: Readonly<Record<string, unknown>>;
  /** Where each option's value came from. */
  readonly sources: Readonly<Record<LmcacheOptionName, ConfigSource>>;
  /** Top-level keys tierkit does not read (kept, not validated). */
  readonly ignored: Readonly<Record<string, unknown>>;
  readonly warnings: readonly string[];
}

export interface LoadLmcacheConfigOptions {
  /** A config file; default $LMCACHE_CONFIG_FILE. */
  readonly file?: string;
  /** The environment (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Values that win over file and environment, as LMCache's overrides do. */
  readonly overrides?: Readonly<Record<string, unknown>>;
}

function convert(name: LmcacheOptionName, v: unknown, source: ConfigSource): unknown {
  const d = LMCACHE_OPTIONS[name] as Def;
  if (v === null || v === undefined) return null;
  switch (d.kind) {
    case 'int':
      return toInt(v, name, source, d.min);
    case 'float':
      return toFloat(v, name, source, d.min);
    case 'bool':
      return toBool(v, name, source);
    case 'list':
      return toStrList(v, name, source);
    case 'dict':
      return toDict(v, name, source);
    default: {
      const s = toStr(v, name, source, d.allowed);
      // _parse_local_disk: "file://<path>/" means <path>/
      return name === 'local_disk' && /^file:\/\/.*\//.test(s) ? s.slice(7) : s;
    }
  }
}

/** Builds the config from already parsed sources (a YAML document, the environment, overrides). */
export function resolveLmcacheConfig(
  doc: Record<string, unknown> | undefined,
  env: Readonly<Record<string, string | undefined>>,
  overrides: Readonly<Record<string, unknown>> = {},
): LmcacheConfig {
  const values = {} as Record<LmcacheOptionName, unknown>;
  const sources = {} as Record<LmcacheOptionName, ConfigSource>;
  const warnings: string[] = [];
  const ignored: Record<string, unknown> = {};
  for (const name of Object.keys(LMCACHE_OPTIONS) as LmcacheOptionName[]) {
    values[name] = (LMCACHE_OPTIONS[name] as Def).default;
    sources[name] = 'default';
  }
  if (doc) {
    for (const [k, v] of Object.entries(doc)) {
      if (k in LMCACHE_OPTIONS) {
        values[k as LmcacheOptionName] = convert(k as LmcacheOptionName, v, 'file');
        sources[k as LmcacheOptionName] = 'file';
      } else ignored[k] = v;
    }
  }
  for (const name of Object.keys(LMCACHE_OPTIONS) as LmcacheOptionName[]) {
    const raw = env[`LMCACHE_${name.toUpperCase()}`];
    if (raw === undefined) continue;
    values[name] = convert(name, unquoteEnv(raw), 'env');
    sources[name] = 'env';
  }
  for (const [k, v] of Object.entries(overrides)) {
    if (!(k in LMCACHE_OPTIONS))
      throw lmcacheInvalid(`LMCache config override: tierkit does not read ${JSON.stringify(k)}`);
    values[k as LmcacheOptionName] = convert(k as LmcacheOptionName, v, 'override');
    sources[k as LmcacheOptionName] = 'override';
  }
  const extra = (values.extra_config ?? {}) as Record<string, unknown>;
  // gds_buffer_size, or its older spelling.
  const newBuf = values.gds_buffer_size as number | null;
  const oldBuf = values.cufile_buffer_size as number | null;
  if (newBuf !== null && oldBuf !== null && newBuf !== oldBuf) {
    warnings.push(
      `gds_buffer_size (${newBuf}) and the older cufile_buffer_size (${oldBuf}) disagree: gds_buffer_size wins`,
    );
  }
  // use_gds where set; else extra_config.use_cufile / use_gds (older LMCache); else auto.
  let useGds: boolean | undefined;
  if (sources.use_gds !== 'default') useGds = values.use_gds as boolean;
  else if (extra.use_cufile !== undefined && extra.use_cufile !== null)
    useGds = toBool(extra.use_cufile, 'extra_config.use_cufile', 'file');
  else if (extra.use_gds !== undefined && extra.use_gds !== null)
    useGds = toBool(extra.use_gds, 'extra_config.use_gds', 'file');
  for (const k of Object.keys(extra)) {
    if (k.startsWith('hfs3fs_')) {
      warnings.push(
        `extra_config.${k} is not read by LMCache (a misspelling of hf3fs_${k.slice(7)}?): its default applies`,
      );
    }
  }
  return {
    chunkSize: values.chunk_size as number,
    localCpu: values.local_cpu as boolean,
    maxLocalCpuSize: values.max_local_cpu_size as number,
    localDisk: values.local_disk as string | null,
    maxLocalDiskSize: values.max_local_disk_size as number,
    remoteUrl: values.remote_url as string | null,
    remoteStoragePlugins: (values.remote_storage_plugins as string[] | null) ?? [],
    gdsPath: values.gds_path as string | null,
    gdsPathSharding: values.gds_path_sharding as 'by_gpu',
    gdsBufferSize: newBuf ?? oldBuf,
    useGds,
    gdsBackend: values.gds_backend as 'cufile' | 'hipfile',
    saveUnfullChunk: values.save_unfull_chunk as boolean,
    useLayerwise: values.use_layerwise as boolean,
    extraConfig: extra,
    sources,
    ignored,
    warnings,
  };
}

// PyYAML's resolvers for plain scalars (yaml/resolver.py): what is not one of these is a string.
const PY_INT =
  /^[-+]?(?:0b[0-1_]+|0[0-7_]+|(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|[1-9][0-9_]*(?::[0-5]?[0-9])+)$/;
const PY_FLOAT =
  /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;

/** Parses YAML as PyYAML's safe_load does (YAML 1.1 booleans; `1e2` is a string, `0x10` an int). */
export function parseLmcacheYaml(text: string, file = 'config'): Record<string, unknown> {
  let doc: unknown;
  try {
    const d = parseDocument(text, { version: '1.1' });
    if (d.errors.length) throw d.errors[0];
    visit(d, {
      Scalar(_, node) {
        if (node.type !== 'PLAIN' || typeof node.value !== 'number' || typeof node.source !== 'string')
          return;
        if (!PY_INT.test(node.source) && !PY_FLOAT.test(node.source)) node.value = node.source;
      },
    });
    doc = d.toJS();
  } catch (err) {
    throw lmcacheInvalid(`LMCache config ${file}: not valid YAML: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc))
    throw lmcacheInvalid(`LMCache config ${file}: the document must be a mapping`);
  return doc as Record<string, unknown>;
}

/** A config from YAML text, with the environment's LMCACHE_* overriding it (as with a config file). */
export function parseLmcacheConfig(
  text: string,
  options: {
    env?: Readonly<Record<string, string | undefined>>;
    overrides?: Readonly<Record<string, unknown>>;
  } = {},
): LmcacheConfig {
  return resolveLmcacheConfig(parseLmcacheYaml(text), options.env ?? {}, options.overrides);
}

/** Loads the config as LMCache does: a file (given, or $LMCACHE_CONFIG_FILE) and the environment, or the environment alone. */
export async function loadLmcacheConfig(options: LoadLmcacheConfigOptions = {}): Promise<LmcacheConfig> {
  const env = options.env ?? process.env;
  const file = options.file ?? env.LMCACHE_CONFIG_FILE;
  let doc: Record<string, unknown> | undefined;
  if (file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw lmcacheInvalid(`LMCache config file ${file}: ${(err as Error).message}`);
    }
    doc = parseLmcacheYaml(text, file);
  }
  return resolveLmcacheConfig(doc, env, options.overrides);
}

/** The GDS backend's settings, as LMCache's GdsBackend reads them. */
export interface LmcacheGdsSettings {
  readonly paths: readonly string[];
  readonly sharding: 'by_gpu';
  /** 'auto' unless the user chose (LMCache turns GDS off on tmpfs/overlayfs only when not chosen). */
  readonly useCufile: 'auto' | 'on' | 'off';
  readonly backend: 'cufile' | 'hipfile';
  /** MiB; LMCache requires it for its registered buffer (tierkit: the staging size). */
  readonly bufferMiB: number | null;
  /** extra_config.use_direct_io (LMCache's default false). */
  readonly useDirectIo: boolean;
  /** extra_config.disk_io_threads (default 4; 0 = no thread pool). */
  readonly ioThreads: number;
  readonly chunkSize: number;
}

export function lmcacheGdsSettings(c: LmcacheConfig): LmcacheGdsSettings {
  if (!c.gdsPath) throw lmcacheInvalid('LMCache config: gds_path is not set (LMCACHE_GDS_PATH)');
  const paths = c.gdsPath
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  if (paths.length === 0) throw lmcacheInvalid('LMCache config gds_path: at least one path must be provided');
  const x = c.extraConfig;
  return {
    paths,
    sharding: c.gdsPathSharding,
    useCufile: c.useGds === undefined ? 'auto' : c.useGds ? 'on' : 'off',
    backend: c.gdsBackend,
    bufferMiB: c.gdsBufferSize,
    useDirectIo:
      x.use_direct_io === undefined || x.use_direct_io === null
        ? false
        : toBool(x.use_direct_io, 'extra_config.use_direct_io', 'file'),
    ioThreads:
      x.disk_io_threads === undefined
        ? 4
        : toInt(x.disk_io_threads, 'extra_config.disk_io_threads', 'file', 0, 1024),
    chunkSize: c.chunkSize,
  };
}

/** One hf3fs remote storage plugin, as LMCache's 3FS connector reads it. */
export interface LmcacheHf3fsSettings {
  readonly plugin: string;
  readonly mountPoint: string;
  readonly basePaths: readonly string[];
  readonly iovSize: number;
  readonly iorEntries: number;
  readonly ioDepth: number;
  readonly numaId: number;
  readonly ioThreadNum: number;
  /** extra_config.save_chunk_meta (default true): the RemoteMetadata header. */
  readonly saveChunkMeta: boolean;
}

/** Every hf3fs plugin of the config (plugin mode), and the legacy remote_url "hf3fs://" form. */
export function lmcacheHf3fsSettings(c: LmcacheConfig): LmcacheHf3fsSettings[] {
  const x = c.extraConfig;
  const int = (k: string, lo: number, hi: number, d: number) =>
    x[k] === undefined || x[k] === null ? d : toInt(x[k], `extra_config.${k}`, 'file', lo, hi);
  const mount = x.hf3fs_mount_point;
  const common = () => {
    if (typeof mount !== 'string' || mount === '')
      throw lmcacheInvalid('LMCache config: extra_config.hf3fs_mount_point is required for 3FS');
    return {
      mountPoint: mount,
      iovSize: int('hf3fs_iov_size', 104857600, 2147483648, 209715200),
      iorEntries: int('hf3fs_ior_entries', 128, 1024, 256),
      ioDepth: int('hf3fs_io_depth', -128, 128, 0),
      numaId: int('hf3fs_numa_id', -1, 1024, -1),
      ioThreadNum: int('hf3fs_io_thread_num', 2, 16, 4),
      saveChunkMeta:
        x.save_chunk_meta === undefined
          ? true
          : toBool(x.save_chunk_meta, 'extra_config.save_chunk_meta', 'file'),
    };
  };
  const split = (s: unknown, key: string) => {
    const list = toStrList(s, key, 'file')
      .map((p) => p.trim())
      .filter(Boolean);
    if (list.length === 0) throw lmcacheInvalid(`LMCache config ${key}: at least one base path is needed`);
    return list;
  };
  const out: LmcacheHf3fsSettings[] = [];
  for (const plugin of c.remoteStoragePlugins) {
    if (plugin !== 'hf3fs' && !plugin.startsWith('hf3fs.')) continue;
    const key = `remote_storage_plugin.${plugin}.base_path`;
    const base = x[key] ?? x.hf3fs_base_path;
    if (base === undefined || base === null) {
      throw lmcacheInvalid(
        `LMCache config: plugin ${plugin} needs extra_config.${key} or extra_config.hf3fs_base_path`,
      );
    }
    out.push({
      plugin,
      ...common(),
      basePaths: split(base, x[key] !== undefined ? `extra_config.${key}` : 'extra_config.hf3fs_base_path'),
    });
  }
  if (c.remoteUrl?.startsWith('hf3fs://')) {
    out.push({
      plugin: 'hf3fs',
      ...common(),
      basePaths: split(c.remoteUrl.slice('hf3fs://'.length), 'remote_url'),
    });
  }
  return out;
}
