/**
 * Stacks from plain config: flags, a YAML/JSON file and `TIERKIT_*` variables
 * (flags win over the environment, the environment over the file).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseDuration } from '@tierkit/policy-lru';
import { createStack, type StackTier, type Tier, TierError, type ValidateMode } from '@tierkit/tier-core';
import { type FsTier, parseSize } from '@tierkit/tier-fs';
import { ENV_ALIASES, ENV_VARS } from './env-vars.js';
import { emitUnvalidatedWarning, OfflineServing, OriginOutage, type UnvalidatedNotice } from './offline.js';
import {
  buildFileTier,
  buildTier,
  hasScheme,
  parseTierEntry,
  type TierEntry,
  type TierSpec,
} from './tiers.js';

export interface TierkitConfig {
  /** The cache: `file:///var/cache/models?maxBytes=200GiB` or a directory path. */
  readonly cache?: string;
  /** The origin: `s3://bucket/prefix?endpoint=…`, `file:///mnt/nfs/models` or a path. */
  readonly origin?: string;
  /**
   * Any stack, fastest first, the last entry its origin: URLs (memory://,
   * file:// or a path, s3://, gds://, 3fs://) or `{ url, name, …options }`.
   * `cache`/`origin` are the two-tier shorthand; given with `tiers`, `origin`
   * replaces the last entry and `cache` the first directory cache.
   */
  readonly tiers?: readonly TierEntry[];
  /** When cached copies are checked against the origin: `never`, `first-open` (default) or `{ ttlMs }`. */
  readonly validate?: ValidateMode;
  /** Serve cached copies, unvalidated, when the origin cannot be reached (default false). */
  readonly staleIfError?: boolean;
  /** Writes through the stack: to the origin and the caches (`through`, default) or the origin only (`around`). */
  readonly writeMode?: 'through' | 'around';
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

export { ENV_ALIASES, ENV_VARS } from './env-vars.js';

type Kind = 'string' | 'int' | 'size' | 'duration' | 'bool' | 'port' | 'tiers' | 'validate' | 'writeMode';

const KINDS: Record<keyof TierkitConfig, Kind> = {
  cache: 'string',
  origin: 'string',
  tiers: 'tiers',
  validate: 'validate',
  staleIfError: 'bool',
  writeMode: 'writeMode',
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

/** A usage error (exit 2); `setting` names the key, flag or variable at fault. */
export function usage(message: string, setting?: string): TierError {
  return new TierError('INVALID_ARGUMENT', message, {
    retryable: false,
    details: { usage: true, ...(setting ? { setting } : {}) },
  });
}

/** `never`, `first-open`, `always` (every access), a TTL (`10m`), or `{ ttlMs }` / `{ ttl: '10m' }`. */
function coerceValidate(value: unknown, where: string): ValidateMode {
  const bad = () =>
    usage(
      `${where}: expected never, first-open, always or a time to live such as 10m, got ${JSON.stringify(value)}`,
      where,
    );
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && typeof o.ttlMs === 'number' && Number.isSafeInteger(o.ttlMs) && o.ttlMs >= 0) {
      return { ttlMs: o.ttlMs };
    }
    if (keys.length === 1 && typeof o.ttl === 'string') return { ttlMs: ttlOf(o.ttl, `${where}.ttl`) };
    throw bad();
  }
  if (typeof value === 'number') return { ttlMs: ttlOf(String(value), where) };
  if (typeof value !== 'string') throw bad();
  const v = value.trim().toLowerCase();
  if (v === 'never' || v === 'first-open') return v;
  if (v === 'always') return { ttlMs: 0 };
  if (!/^\d/.test(v)) throw bad();
  return { ttlMs: ttlOf(v, where) };
}

function ttlOf(text: string, where: string): number {
  if (/^\d+(?:\.\d+)?$/.test(text.trim()))
    throw usage(`${where}: ${JSON.stringify(text)} needs a unit, e.g. 30s, 10m, 1h`, where);
  try {
    return parseDuration(text.trim());
  } catch (err) {
    throw usage(`${where}: ${(err as Error).message}`, where);
  }
}

/** Checks a `tiers` list (a YAML/JSON list, or URLs separated by spaces in a variable). */
function coerceTiers(value: unknown, where: string, base: string | undefined): TierEntry[] {
  const list = typeof value === 'string' ? value.trim().split(/\s+/).filter(Boolean) : value;
  if (!Array.isArray(list) || list.length === 0) {
    throw usage(`${where}: expected a list of tiers, fastest first, the origin last`, where);
  }
  return list.map((entry, i) => {
    const spec = parseTierEntry(entry, `${where}[${i}]`, base);
    // Paths become URLs here, so a config file's relative paths mean what they meant next to it.
    return typeof entry === 'string'
      ? spec.url.href
      : ({ ...(entry as object), url: spec.url.href } as TierEntry);
  });
}

/** Checks and converts one config value (from a flag, a variable or a file); `base` resolves relative paths. */
export function coerce(field: keyof TierkitConfig, value: unknown, where: string, base?: string): unknown {
  const kind = KINDS[field];
  const text = typeof value === 'string' ? value.trim() : value;
  switch (kind) {
    case 'tiers':
      return coerceTiers(value, where, base);
    case 'validate':
      return coerceValidate(value, where);
    case 'writeMode':
      if (text !== 'through' && text !== 'around') {
        throw usage(`${where}: expected through or around, got ${JSON.stringify(value)}`, where);
      }
      return text;
    case 'string':
      if (typeof text !== 'string' || text === '')
        throw usage(`${where}: expected a non-empty string`, where);
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
          where,
        );
      if (field === 'concurrency' && n < 1) throw usage(`${where}: must be at least 1`, where);
      return n;
    }
    case 'size': {
      if (typeof text === 'number' && Number.isFinite(text) && text >= 0) return text;
      try {
        return parseSize(where, String(text));
      } catch {
        throw usage(
          `${where}: ${JSON.stringify(value)} is not a size (e.g. 512MiB, 10GB, 1073741824)`,
          where,
        );
      }
    }
    case 'duration':
      // A bare number would be milliseconds: `--older-than 2` purging nearly everything is never meant.
      if (typeof text === 'number' || /^\d+(?:\.\d+)?$/.test(String(text))) {
        throw usage(`${where}: ${JSON.stringify(value)} needs a unit, e.g. 30s, 15m, 12h, 1d, 1w`, where);
      }
      try {
        parseDuration(text as string);
      } catch (err) {
        throw usage(`${where}: ${(err as Error).message}`, where);
      }
      return String(text);
    case 'bool':
      if (typeof text === 'boolean') return text;
      if (/^(1|true|yes|on)$/i.test(String(text))) return true;
      if (/^(0|false|no|off|)$/i.test(String(text))) return false;
      throw usage(`${where}: expected 1/0, true/false, got ${JSON.stringify(value)}`, where);
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
    doc = path.endsWith('.json') ? JSON.parse(text) : (await import('yaml')).parse(text);
  } catch (err) {
    throw usage(
      `config file ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
    );
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw usage(`config file ${path} must hold a mapping of settings (tiers or cache and origin, …)`);
  }
  const base = resolve(path, '..');
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (!(k in KINDS)) {
      throw usage(`config file ${path}: unknown setting '${k}' (known: ${Object.keys(KINDS).join(', ')})`, k);
    }
    let value = coerce(k as keyof TierkitConfig, v, `${path}: ${k}`, base);
    // Paths in a config file are relative to the file.
    if (
      (k === 'manifest' || k === 'cache' || k === 'origin') &&
      typeof value === 'string' &&
      !hasScheme(value)
    ) {
      value = resolve(base, value);
    }
    out[k] = value;
  }
  if (out.tiers && (out.cache !== undefined || out.origin !== undefined)) {
    throw usage(
      `config file ${path}: give either tiers (any stack) or cache and origin (the two-tier shorthand), not both`,
      'tiers',
    );
  }
  return out as TierkitConfig;
}

/** Settings from `TIERKIT_*` variables (and their aliases, such as AIOLI_DISABLE_MODEL_CACHE). */
export function configFromEnv(env: NodeJS.ProcessEnv): TierkitConfig {
  const out: Record<string, unknown> = {};
  const value = (name: string): [string, string] | undefined => {
    const v = env[name];
    if (v !== undefined && v !== '') return [name, v];
    for (const [alias, of] of Object.entries(ENV_ALIASES)) {
      const a = env[alias];
      if (of === name && a !== undefined && a !== '') return [alias, a];
    }
    return undefined;
  };
  for (const [name, field] of Object.entries(ENV_VARS)) {
    const found = value(name);
    if (found) out[field] = coerce(field, found[1], found[0]);
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

export function clockOf(config: TierkitConfig): (() => number) | undefined {
  const now = config.nowMs;
  return now === undefined ? undefined : () => now;
}

/** A tier of the stack a config describes, checked but not built. */
export interface PlannedTier {
  readonly spec: TierSpec;
  readonly name: string;
  readonly role: 'cache' | 'origin';
}

/**
 * The tiers a config describes, fastest first: `tiers`, with `origin` and
 * `cache` (from flags or variables) replacing the origin and the first
 * directory cache; or the `[cache, origin]` shorthand. Either may be missing
 * here; what needs it says so. `cacheIndex` is the directory cache the
 * operator commands (ls, pin, purge, verify) work on.
 */
export function planTiers(config: TierkitConfig): {
  tiers: PlannedTier[];
  cacheIndex?: number;
  hasOrigin: boolean;
} {
  let specs: TierSpec[];
  let cacheIndex: number | undefined;
  let hasOrigin: boolean;
  if (config.tiers) {
    specs = config.tiers.map((e, i) => parseTierEntry(e, `tiers[${i}]`));
    if (config.origin) specs[specs.length - 1] = parseTierEntry(config.origin, 'origin');
    const found = specs.findIndex((s, i) => i < specs.length - 1 && s.scheme === 'file');
    cacheIndex = found < 0 ? undefined : found;
    if (config.cache) {
      if (cacheIndex === undefined) {
        throw usage(
          `--cache ${config.cache}: tiers lists no directory cache above the origin to replace`,
          'cache',
        );
      }
      specs[cacheIndex] = parseTierEntry(config.cache, 'cache');
    }
    hasOrigin = true;
  } else {
    specs = [];
    if (config.cache) {
      specs.push(parseTierEntry(config.cache, 'cache'));
      cacheIndex = 0;
    }
    if (config.origin) specs.push(parseTierEntry(config.origin, 'origin'));
    hasOrigin = config.origin !== undefined;
  }
  if (cacheIndex !== undefined && specs[cacheIndex]!.scheme !== 'file') {
    throw usage(`--cache must be a directory (file:// URL or path), got ${config.cache}`, 'cache');
  }
  const names = new Set<string>();
  const last = specs.length - 1;
  const tiers = specs.map((spec, i): PlannedTier => {
    const role = hasOrigin && i === last ? 'origin' : 'cache';
    let name = spec.name ?? (role === 'origin' ? 'origin' : i === cacheIndex ? 'cache' : spec.scheme);
    if (names.has(name)) {
      if (spec.name !== undefined)
        throw usage(`${spec.where}.name: '${name}' names two tiers`, `${spec.where}.name`);
      let n = 2;
      while (names.has(`${name}-${n}`)) n++;
      name = `${name}-${n}`;
    }
    names.add(name);
    return { spec, name, role };
  });
  return { tiers, ...(cacheIndex !== undefined ? { cacheIndex } : {}), hasOrigin };
}

/** Builds the directory cache the operator commands work on. */
export function cacheFromConfig(config: TierkitConfig, extra: { name?: string } = {}): FsTier {
  const plan = planTiers(config);
  if (plan.cacheIndex === undefined) {
    throw usage(
      config.tiers
        ? 'this needs a directory cache: tiers lists no file:// tier above the origin'
        : 'no cache given: pass --cache file:///var/cache/models (or a path), set TIERKIT_CACHE, or cache: in --config',
      'cache',
    );
  }
  const t = plan.tiers[plan.cacheIndex]!;
  return buildFileTier(t.spec, { name: extra.name ?? t.name, role: 'cache', clock: clockOf(config) });
}

function noOrigin(): TierError {
  return usage(
    'no origin given: pass --origin s3://bucket/prefix (or a directory), set TIERKIT_ORIGIN, or origin: (or tiers:) in --config',
    'origin',
  );
}

/**
 * Builds the origin: `s3://` (credentials and AWS_ENDPOINT_URL from the
 * environment), a directory (opened read-only), or any other tier `tiers` ends with.
 */
export async function originFromConfig(
  config: TierkitConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Tier> {
  const plan = planTiers(config);
  if (!plan.hasOrigin) throw noOrigin();
  const t = plan.tiers[plan.tiers.length - 1]!;
  return buildTier(t.spec, { name: t.name, role: 'origin', env, clock: clockOf(config) });
}

/** The configured origin's kind (`s3`, `file`, …) and tier name, for messages; undefined when none or unparsable. */
export function describeOrigin(
  config: TierkitConfig,
): { scheme: TierSpec['scheme']; name: string } | undefined {
  try {
    const plan = planTiers(config);
    const t = plan.tiers[plan.tiers.length - 1];
    return plan.hasOrigin && t ? { scheme: t.spec.scheme, name: t.name } : undefined;
  } catch {
    return undefined;
  }
}

export interface BuiltStack {
  readonly stack: StackTier;
  /** The directory cache the operator commands use; undefined when disabled or when the stack has none. */
  readonly cache: FsTier | undefined;
  readonly origin: Tier;
  /** Every tier, fastest first (the origin as wrapped by `wrapOrigin`). */
  readonly tiers: readonly Tier[];
  /** Reads served without validation because the origin could not be reached (with `staleIfError`). */
  readonly offline: OfflineServing;
}

export interface StackFromConfigOptions {
  /** Wraps the origin (metrics, byte progress). */
  readonly wrapOrigin?: (t: Tier) => Tier;
  readonly onWarning?: (w: { key: string; tier: string; op: string; error: unknown }) => void;
  /**
   * Told once, the first time a cached copy is served unvalidated because the
   * origin could not be reached (`staleIfError`). Default: a process warning
   * (code TIERKIT_UNVALIDATED) on stderr.
   */
  readonly onUnvalidated?: (notice: UnvalidatedNotice) => void;
  /** Where s3:// tiers take AWS_ENDPOINT_URL and the region from (default process.env). */
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * The stack a config describes: `tiers` (or `[cache, origin]`), or the origin
 * alone when `disableCache` is set (TIERKIT_DISABLE_CACHE=1: the cache disk is
 * full or suspect), with its `validate`, `staleIfError` and `writeMode`.
 */
export async function stackFromConfig(
  config: TierkitConfig,
  options: StackFromConfigOptions = {},
): Promise<BuiltStack> {
  const plan = planTiers(config);
  if (!plan.hasOrigin) throw noOrigin();
  const clock = clockOf(config);
  const planned = config.disableCache ? plan.tiers.slice(-1) : plan.tiers;
  if (!config.disableCache && planned.length < 2 && !config.tiers) {
    throw usage(
      'no cache given: pass --cache file:///var/cache/models (or a path), set TIERKIT_CACHE, or cache: in --config',
      'cache',
    );
  }
  const offline = new OfflineServing(options.onUnvalidated ?? emitUnvalidatedWarning);
  const built: Tier[] = [];
  try {
    for (const t of planned) {
      const tier = await buildTier(t.spec, { name: t.name, role: t.role, env: options.env, clock });
      built.push(t.role === 'origin' && config.staleIfError ? new OriginOutage(tier) : tier);
    }
  } catch (err) {
    await Promise.all(built.map((t) => t.close().catch(() => undefined)));
    throw err;
  }
  const rawOrigin = built.pop()!;
  const origin = options.wrapOrigin ? options.wrapOrigin(rawOrigin) : rawOrigin;
  const tiers = [...built, origin];
  const stack = createStack(tiers, {
    ...(config.blockSize ? { blockSize: config.blockSize } : {}),
    ...(config.validate !== undefined ? { validate: config.validate } : {}),
    ...(config.staleIfError !== undefined ? { staleIfError: config.staleIfError } : {}),
    ...(config.writeMode !== undefined ? { writeMode: config.writeMode } : {}),
    ...(clock ? { clock } : {}),
    onWarning: (w) => {
      offline.warned(w);
      options.onWarning?.(w);
    },
  });
  const cache =
    config.disableCache || plan.cacheIndex === undefined ? undefined : (tiers[plan.cacheIndex] as FsTier);
  return { stack, cache, origin, tiers, offline };
}
