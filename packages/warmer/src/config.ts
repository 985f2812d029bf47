/**
 * Stacks from plain config: flags, a YAML/JSON file and `TIERKIT_*` variables
 * (flags win over the environment, the environment over the file).
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseDuration } from '@tierkit/policy-lru';
import { createStack, type StackTier, type Tier, TierError } from '@tierkit/tier-core';
import { type FsTier, fsTierFromUrl, parseSize } from '@tierkit/tier-fs';
import { s3TierFromUrl } from '@tierkit/tier-s3';
import { parse as parseYaml } from 'yaml';

export interface TierkitConfig {
  /** The cache: `file:///var/cache/models?maxBytes=200GiB` or a directory path. */
  readonly cache?: string;
  /** The origin: `s3://bucket/prefix?endpoint=…`, `file:///mnt/nfs/models` or a path. */
  readonly origin?: string;
  /** A manifest file (JSON, YAML, model.json or one item a line). */
  readonly manifest?: string;
  readonly concurrency?: number;
  readonly maxBytesInFlight?: number;
  readonly blockSize?: number;
  readonly purgeUnusedAfter?: string;
  readonly checkUnusedEvery?: string;
  /** Byte budget for `purge`. */
  readonly maxBytes?: number;
  readonly metricsPort?: number;
  /** Bypass the cache: read the origin directly (TIERKIT_DISABLE_CACHE=1). */
  readonly disableCache?: boolean;
  /** A fixed clock (ms since the epoch) for last-use times and purges: for tests only (TIERKIT_NOW_MS). */
  readonly nowMs?: number;
}

/** The `TIERKIT_*` variables and the config field each sets. */
export const ENV_VARS: Readonly<Record<string, keyof TierkitConfig>> = {
  TIERKIT_CACHE: 'cache',
  TIERKIT_ORIGIN: 'origin',
  TIERKIT_MANIFEST: 'manifest',
  TIERKIT_CONCURRENCY: 'concurrency',
  TIERKIT_MAX_BYTES_IN_FLIGHT: 'maxBytesInFlight',
  TIERKIT_BLOCK_SIZE: 'blockSize',
  TIERKIT_PURGE_UNUSED_AFTER: 'purgeUnusedAfter',
  TIERKIT_CHECK_UNUSED_EVERY: 'checkUnusedEvery',
  TIERKIT_MAX_BYTES: 'maxBytes',
  TIERKIT_METRICS_PORT: 'metricsPort',
  TIERKIT_DISABLE_CACHE: 'disableCache',
  TIERKIT_NOW_MS: 'nowMs',
};

const KINDS: Record<keyof TierkitConfig, 'string' | 'int' | 'size' | 'duration' | 'bool' | 'port'> = {
  cache: 'string',
  origin: 'string',
  manifest: 'string',
  concurrency: 'int',
  maxBytesInFlight: 'size',
  blockSize: 'size',
  purgeUnusedAfter: 'duration',
  checkUnusedEvery: 'duration',
  maxBytes: 'size',
  metricsPort: 'port',
  disableCache: 'bool',
  nowMs: 'int',
};

export function usage(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', message, { retryable: false, details: { usage: true } });
}

/** Checks and converts one config value (from a flag, a variable or a file). */
export function coerce(field: keyof TierkitConfig, value: unknown, where: string): unknown {
  const kind = KINDS[field];
  const text = typeof value === 'string' ? value.trim() : value;
  switch (kind) {
    case 'string':
      if (typeof text !== 'string' || text === '') throw usage(`${where}: expected a non-empty string`);
      return text;
    case 'int':
    case 'port': {
      const n =
        typeof text === 'number' ? text : typeof text === 'string' && /^\d+$/.test(text) ? Number(text) : NaN;
      const ok =
        kind === 'port' ? Number.isInteger(n) && n >= 0 && n <= 65535 : Number.isSafeInteger(n) && n >= 0;
      if (!ok)
        throw usage(
          `${where}: expected ${kind === 'port' ? 'a port number (0-65535)' : 'a whole number'}, got ${JSON.stringify(value)}`,
        );
      if (field === 'concurrency' && n < 1) throw usage(`${where}: must be at least 1`);
      return n;
    }
    case 'size': {
      if (typeof text === 'number' && Number.isFinite(text) && text >= 0) return text;
      try {
        return parseSize(where, String(text));
      } catch {
        throw usage(`${where}: ${JSON.stringify(value)} is not a size (e.g. 512MiB, 10GB, 1073741824)`);
      }
    }
    case 'duration':
      // A bare number would be milliseconds: `--older-than 2` purging nearly everything is never meant.
      if (typeof text === 'number' || /^\d+(?:\.\d+)?$/.test(String(text))) {
        throw usage(`${where}: ${JSON.stringify(value)} needs a unit, e.g. 30s, 15m, 12h, 1d, 1w`);
      }
      try {
        parseDuration(text as string);
      } catch (err) {
        throw usage(`${where}: ${(err as Error).message}`);
      }
      return String(text);
    case 'bool':
      if (typeof text === 'boolean') return text;
      if (/^(1|true|yes|on)$/i.test(String(text))) return true;
      if (/^(0|false|no|off|)$/i.test(String(text))) return false;
      throw usage(`${where}: expected 1/0, true/false, got ${JSON.stringify(value)}`);
  }
}

/** Reads a YAML or JSON config file; unknown fields are an error (a typo should not be ignored). */
export async function loadConfigFile(path: string): Promise<TierkitConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw usage(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw usage(
      `config file ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
    );
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw usage(`config file ${path} must hold a mapping of settings (cache, origin, …)`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (!(k in KINDS)) {
      throw usage(`config file ${path}: unknown setting '${k}' (known: ${Object.keys(KINDS).join(', ')})`);
    }
    let value = coerce(k as keyof TierkitConfig, v, `${path}: ${k}`);
    // Paths in a config file are relative to the file.
    if (
      (k === 'manifest' || k === 'cache' || k === 'origin') &&
      typeof value === 'string' &&
      !hasScheme(value)
    ) {
      value = resolve(path, '..', value);
    }
    out[k] = value;
  }
  return out as TierkitConfig;
}

/** Settings from `TIERKIT_*` variables. */
export function configFromEnv(env: NodeJS.ProcessEnv): TierkitConfig {
  const out: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(ENV_VARS)) {
    const v = env[name];
    if (v === undefined || v === '') continue;
    out[field] = coerce(field, v, name);
  }
  return out as TierkitConfig;
}

/** Layers settings: later ones win. */
export function mergeConfig(...layers: readonly (TierkitConfig | undefined)[]): TierkitConfig {
  const out: Record<string, unknown> = {};
  for (const l of layers) {
    if (!l) continue;
    for (const [k, v] of Object.entries(l)) if (v !== undefined) out[k] = v;
  }
  return out as TierkitConfig;
}

function hasScheme(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
}

function asUrl(s: string): string {
  return hasScheme(s) ? s : pathToFileURL(isAbsolute(s) ? s : resolve(s)).href;
}

export function clockOf(config: TierkitConfig): (() => number) | undefined {
  const now = config.nowMs;
  return now === undefined ? undefined : () => now;
}

/** Builds the cache tier (a directory). */
export function cacheFromConfig(config: TierkitConfig, extra: { name?: string } = {}): FsTier {
  if (!config.cache) {
    throw usage(
      'no cache given: pass --cache file:///var/cache/models (or a path), set TIERKIT_CACHE, or cache: in --config',
    );
  }
  const url = asUrl(config.cache);
  if (!url.startsWith('file:'))
    throw usage(`--cache must be a directory (file:// URL or path), got ${config.cache}`);
  const clock = clockOf(config);
  return fsTierFromUrl(url, { name: extra.name ?? 'cache', ...(clock ? { clock } : {}) });
}

/** Builds the origin tier: `s3://` (credentials and AWS_ENDPOINT_URL from the environment) or a directory. */
export function originFromConfig(config: TierkitConfig, env: NodeJS.ProcessEnv = process.env): Tier {
  if (!config.origin) {
    throw usage(
      'no origin given: pass --origin s3://bucket/prefix (or a directory), set TIERKIT_ORIGIN, or origin: in --config',
    );
  }
  const url = asUrl(config.origin);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw usage(`--origin ${config.origin} is not a URL`);
  }
  if (u.protocol === 's3:') {
    const endpoint = u.searchParams.has('endpoint')
      ? undefined
      : (env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL);
    return s3TierFromUrl(u, {
      name: 'origin',
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      ...(u.searchParams.has('region') || env.AWS_REGION || env.AWS_DEFAULT_REGION
        ? {}
        : { region: 'us-east-1' }),
    });
  }
  if (u.protocol === 'file:') return fsTierFromUrl(u, { name: 'origin', create: false });
  throw usage(`--origin must be s3://… or a directory (file:// URL or path), got ${config.origin}`);
}

export interface BuiltStack {
  readonly stack: StackTier;
  /** Undefined when the cache is disabled. */
  readonly cache: FsTier | undefined;
  readonly origin: Tier;
}

/**
 * The stack a config describes: `[cache, origin]`, or `[origin]` alone when
 * `disableCache` is set (TIERKIT_DISABLE_CACHE=1: the cache disk is full or suspect).
 * `wrapOrigin` lets a caller instrument the origin (metrics, byte progress).
 */
export function stackFromConfig(
  config: TierkitConfig,
  options: {
    wrapOrigin?: (t: Tier) => Tier;
    onWarning?: (w: { key: string; tier: string; op: string; error: unknown }) => void;
  } = {},
): BuiltStack {
  const raw = originFromConfig(config);
  const origin = options.wrapOrigin ? options.wrapOrigin(raw) : raw;
  const clock = clockOf(config);
  const common = {
    ...(config.blockSize ? { blockSize: config.blockSize } : {}),
    ...(clock ? { clock } : {}),
    ...(options.onWarning ? { onWarning: options.onWarning } : {}),
  };
  if (config.disableCache) return { stack: createStack([origin], common), cache: undefined, origin };
  const cache = cacheFromConfig(config);
  return { stack: createStack([cache, origin], common), cache, origin };
}
