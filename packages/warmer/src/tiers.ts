/**
 * Tiers from config: one entry of a `tiers:` list (a URL, or a mapping with
 * `url`, `name` and per-tier options) turned into a Tier. Each tier package
 * parses its own options where it has a URL factory (file, s3), so a typo is
 * refused by the code that knows the option; errors name the config key.
 */

import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MemoryTier, type Tier, TierError } from '@tierkit/tier-core';
import { type FsTier, fsTierFromUrl, parseSize } from '@tierkit/tier-fs';
import { checkCacheRoot } from './cache-root.js';
import { directoryOrigin } from './origin-dir.js';

/** One `tiers:` entry as written: a URL or path, or `{ url, name?, …options }`. */
export type TierEntry =
  | string
  | { readonly url: string; readonly name?: string; readonly [option: string]: unknown };

export type TierScheme = 'memory' | 'file' | 's3' | 'gds' | '3fs';

/** A checked `tiers:` entry, not yet built. */
export interface TierSpec {
  readonly scheme: TierScheme;
  readonly url: URL;
  /** The name given (mapping `name` or `?name=`), if any. */
  readonly name?: string;
  /** Options from the mapping (URL query options stay in `url`). */
  readonly options: Readonly<Record<string, unknown>>;
  /** Where it came from, for errors: `tiers[1]`, `--cache`, `TIERKIT_ORIGIN`. */
  readonly where: string;
}

/** A bad setting: a usage error (exit 2) naming the key. */
export function settingError(where: string, message: string): TierError {
  return new TierError('INVALID_ARGUMENT', `${where}: ${message}`, {
    retryable: false,
    details: { usage: true, setting: where },
  });
}

const SCHEMES: Record<string, TierScheme> = {
  'memory:': 'memory',
  'file:': 'file',
  's3:': 's3',
  'gds:': 'gds',
  'hf3fs:': '3fs',
};

export function hasScheme(s: string): boolean {
  return /^[a-z0-9][a-z0-9+.-]*:\/\//i.test(s);
}

/** A URL, or a path (relative to `base`) as a file: URL. `3fs://` is spelled `hf3fs://` for WHATWG URLs. */
export function toUrl(text: string, where: string, base?: string): URL {
  const s = text.replace(/^3fs:\/\//i, 'hf3fs://');
  if (!hasScheme(s)) return pathToFileURL(isAbsolute(s) ? s : resolve(base ?? '.', s));
  try {
    return new URL(s);
  } catch {
    throw settingError(where, `${JSON.stringify(text)} is not a URL`);
  }
}

/** Checks one `tiers:` entry (scheme, shape, option values as data); building checks the rest. */
export function parseTierEntry(entry: unknown, where: string, base?: string): TierSpec {
  let text: unknown = entry;
  let name: string | undefined;
  const options: Record<string, unknown> = {};
  if (entry !== null && typeof entry === 'object' && !Array.isArray(entry)) {
    const { url, name: n, ...rest } = entry as Record<string, unknown>;
    if (url === undefined) throw settingError(`${where}.url`, 'missing: each tier needs a url (or a path)');
    text = url;
    if (n !== undefined) {
      if (typeof n !== 'string' || n.trim() === '')
        throw settingError(`${where}.name`, 'expected a non-empty string');
      name = n.trim();
    }
    for (const [k, v] of Object.entries(rest)) {
      if (v === null || (typeof v === 'object' && !Array.isArray(v))) {
        throw settingError(
          `${where}.${k}`,
          `expected a number, string, boolean or list, got ${JSON.stringify(v)}`,
        );
      }
      options[k] = v;
    }
  }
  if (typeof text !== 'string' || text.trim() === '') {
    throw settingError(
      typeof entry === 'object' ? `${where}.url` : where,
      'expected a URL or a path (a non-empty string)',
    );
  }
  const url = toUrl(text.trim(), typeof entry === 'object' ? `${where}.url` : where, base);
  const scheme = SCHEMES[url.protocol];
  if (!scheme) {
    throw settingError(
      where,
      `unknown tier type '${url.protocol.slice(0, -1)}' in ${url.href}: use memory://, file:// (or a path), s3://, gds:// or 3fs://`,
    );
  }
  const fromQuery = url.searchParams.get('name') ?? undefined;
  return { scheme, url, name: name ?? fromQuery, options, where };
}

/** Options of a mapping as URL query parameters, for the tiers whose URL factory checks them. */
function withQuery(spec: TierSpec, skip: readonly string[] = []): URL {
  const u = new URL(spec.url.href);
  for (const [k, v] of Object.entries(spec.options)) {
    if (skip.includes(k)) continue;
    if (Array.isArray(v)) throw settingError(`${spec.where}.${k}`, `expected one value, got a list`);
    u.searchParams.set(k, String(v));
  }
  return u;
}

type Kind = 'int' | 'size' | 'bool' | 'string' | 'strings' | 'use';

/** Options of the tiers without a URL factory (and of memory://), by name. */
const GDS_OPTIONS: Record<string, Kind> = {
  cufileBufferSize: 'int',
  useCufile: 'use',
  device: 'int',
  useDirectIo: 'bool',
  ioThreads: 'int',
  fsync: 'bool',
  chunkSize: 'int',
};
const HF3FS_OPTIONS: Record<string, Kind> = {
  basePath: 'strings',
  iovSize: 'size',
  iorEntries: 'int',
  ioDepth: 'int',
  numaId: 'int',
  ioThreadNum: 'int',
  naming: 'string',
  useUsrbio: 'string',
  timeoutMs: 'int',
  fsync: 'bool',
};
const MEMORY_OPTIONS: Record<string, Kind> = { maxBytes: 'size' };

function convert(where: string, kind: Kind, v: unknown): unknown {
  const s = typeof v === 'string' ? v.trim() : v;
  switch (kind) {
    case 'int': {
      const n = typeof s === 'number' ? s : typeof s === 'string' && /^-?\d+$/.test(s) ? Number(s) : NaN;
      if (!Number.isSafeInteger(n))
        throw settingError(where, `expected a whole number, got ${JSON.stringify(v)}`);
      return n;
    }
    case 'size':
      if (typeof s === 'number' && Number.isSafeInteger(s) && s >= 0) return s;
      try {
        return parseSize(where, String(s));
      } catch {
        throw settingError(where, `${JSON.stringify(v)} is not a size (e.g. 512MiB, 10GB)`);
      }
    case 'bool':
    case 'use':
      if (typeof s === 'boolean') return s;
      if (/^(1|true|yes|on)$/i.test(String(s))) return kind === 'use' && s === 'on' ? 'on' : true;
      if (/^(0|false|no|off)$/i.test(String(s))) return kind === 'use' && s === 'off' ? 'off' : false;
      if (kind === 'use' && s === 'auto') return 'auto';
      throw settingError(
        where,
        `expected ${kind === 'use' ? 'auto, on or off' : 'true or false'}, got ${JSON.stringify(v)}`,
      );
    case 'string':
      if (typeof s !== 'string' || s === '')
        throw settingError(where, `expected a string, got ${JSON.stringify(v)}`);
      return s;
    case 'strings': {
      const list = Array.isArray(s) ? s : typeof s === 'string' ? s.split(',') : undefined;
      if (!list || list.some((x) => typeof x !== 'string' || x.trim() === '')) {
        throw settingError(where, `expected a path or a list of paths, got ${JSON.stringify(v)}`);
      }
      return list.map((x: string) => x.trim());
    }
  }
}

/** URL query and mapping options of a tier without a URL factory, checked against `known`. */
function ownOptions(spec: TierSpec, known: Record<string, Kind>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const take = (k: string, v: unknown, where: string) => {
    const kind = known[k];
    if (!kind) {
      throw settingError(
        where,
        `unknown option for a ${spec.scheme} tier (known: ${['name', ...Object.keys(known)].join(', ')})`,
      );
    }
    out[k] = convert(where, kind, v);
  };
  for (const [k, v] of spec.url.searchParams) if (k !== 'name') take(k, v, `${spec.where} (${k} in the URL)`);
  for (const [k, v] of Object.entries(spec.options)) take(k, v, `${spec.where}.${k}`);
  return out;
}

function localPath(spec: TierSpec): string {
  if (spec.url.host !== '' && spec.url.host !== 'localhost') {
    throw settingError(
      spec.where,
      `${spec.url.href}: use three slashes for a local path (${spec.scheme}:///path)`,
    );
  }
  const p = decodeURIComponent(spec.url.pathname);
  if (p === '' || p === '/') throw settingError(spec.where, `${spec.url.href} names no directory`);
  return p;
}

export interface BuildTierOptions {
  readonly name: string;
  /** The last tier of a stack is its origin: a directory origin is opened read-only. */
  readonly role: 'cache' | 'origin';
  readonly env?: NodeJS.ProcessEnv;
  readonly clock?: () => number;
}

/** Builds a file: tier synchronously (what the operator commands need). */
export function buildFileTier(spec: TierSpec, options: BuildTierOptions): FsTier {
  const clock = options.clock ? { clock: options.clock } : {};
  if (options.role === 'cache') {
    const q = withQuery(spec).searchParams;
    if (q.get('create') !== 'false' && q.get('readOnly') !== 'true') checkCacheRoot(localPath(spec));
  }
  return wrapErrors(spec, () =>
    options.role === 'origin'
      ? directoryOrigin(withQuery(spec), { name: options.name })
      : fsTierFromUrl(withQuery(spec), { name: options.name, ...clock }),
  );
}

/**
 * Builds an s3:// tier: credentials and AWS_ENDPOINT_URL(_S3) from the environment.
 * @tierkit/tier-s3 (the AWS SDK: half a second to load) is imported only here, so
 * commands that use no S3 tier start without it.
 */
export async function buildS3Tier(spec: TierSpec, options: BuildTierOptions): Promise<Tier> {
  const { s3TierFromUrl } = await import('@tierkit/tier-s3');
  const env = options.env ?? process.env;
  const u = withQuery(spec);
  const endpoint = u.searchParams.has('endpoint')
    ? undefined
    : (env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL);
  const region =
    u.searchParams.has('region') || env.AWS_REGION || env.AWS_DEFAULT_REGION ? {} : { region: 'us-east-1' };
  return wrapErrors(spec, () =>
    s3TierFromUrl(u, {
      name: options.name,
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      ...region,
    }),
  );
}

/**
 * Builds any tier. gds:// and 3fs:// load @tierkit/tier-gds and
 * @tierkit/tier-3fs on demand (optional peer dependencies: a user who does not
 * use them does not install the native addon they bring).
 */
export async function buildTier(spec: TierSpec, options: BuildTierOptions): Promise<Tier> {
  switch (spec.scheme) {
    case 'file':
      return buildFileTier(spec, options);
    case 's3':
      return buildS3Tier(spec, options);
    case 'memory': {
      const o = ownOptions(spec, MEMORY_OPTIONS);
      if (spec.url.host !== '' || (spec.url.pathname !== '' && spec.url.pathname !== '/')) {
        throw settingError(
          spec.where,
          `${spec.url.href}: a memory tier has no location (memory://?maxBytes=…)`,
        );
      }
      return wrapErrors(
        spec,
        () =>
          new MemoryTier({
            name: options.name,
            ...(o.maxBytes !== undefined ? { maxBytes: o.maxBytes as number } : {}),
            ...(options.clock ? { clock: options.clock } : {}),
          }),
      );
    }
    case 'gds': {
      const o = ownOptions(spec, GDS_OPTIONS);
      const gdsPath = localPath(spec);
      const mod = await load<typeof import('@tierkit/tier-gds')>('@tierkit/tier-gds', spec);
      return wrapErrors(spec, () => mod.createGdsTier({ ...o, gdsPath, name: options.name }));
    }
    case '3fs': {
      const o = ownOptions(spec, HF3FS_OPTIONS);
      const mountPoint = localPath(spec);
      if (o.basePath === undefined)
        throw settingError(`${spec.where}.basePath`, 'missing: a 3fs tier needs basePath');
      const mod = await load<typeof import('@tierkit/tier-3fs')>('@tierkit/tier-3fs', spec);
      return wrapErrors(spec, () =>
        mod.createHf3fsTier({
          ...(o as object),
          mountPoint,
          basePath: o.basePath as string[],
          name: options.name,
        }),
      );
    }
  }
}

async function load<T>(pkg: string, spec: TierSpec): Promise<T> {
  return loadOptional<T>(pkg, `${spec.where}: ${spec.scheme} tiers`);
}

/** Imports an optional peer dependency; missing, an UNSUPPORTED error saying what needs it and how to install it. */
export async function loadOptional<T>(pkg: string, what: string): Promise<T> {
  try {
    return (await import(pkg)) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String(err).includes(pkg)) {
      throw new TierError('UNSUPPORTED', `${what} need ${pkg}: npm install ${pkg}`, {
        cause: err,
        retryable: false,
      });
    }
    throw err;
  }
}

/** A tier package's own INVALID_ARGUMENT, prefixed with the config key it came from. */
function wrapErrors<T>(spec: TierSpec, build: () => T): T {
  try {
    return build();
  } catch (err) {
    if (err instanceof TierError && err.code === 'INVALID_ARGUMENT') {
      throw new TierError('INVALID_ARGUMENT', `${spec.where}: ${err.message}`, {
        cause: err,
        retryable: false,
        details: { usage: true, setting: spec.where },
      });
    }
    throw err;
  }
}
