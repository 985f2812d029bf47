/**
 * Manifests: what to warm. A list of keys, prefixes and globs, or a
 * Practicus-style `model.json` (`download_files_from`, `download_files_to`).
 */
import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { assertKey, type ObjectMeta, type Tier, TierError } from '@tierkit/tier-core';

export interface Manifest {
  /** Exact keys. */
  readonly keys?: readonly string[];
  /** Every object whose key starts with one of these (a string prefix; `''` is everything). */
  readonly prefixes?: readonly string[];
  /** Keys matching a glob: `*` and `?` within a segment, `**` across segments. */
  readonly globs?: readonly string[];
  /** Leave out keys matching these globs (`**\/*.bin`), or starting with these prefixes (ending in `/`). */
  readonly exclude?: readonly string[];
  /** Origin URL the manifest names (model.json's `download_files_from` when it is a URL). */
  readonly origin?: string;
  /** Cache URL the manifest names (model.json's `download_files_to`). */
  readonly cache?: string;
}

/** A Practicus AI `model.json`: where the files live and where they should be on disk. */
export interface ModelJson {
  readonly download_files_from: string;
  readonly download_files_to?: string;
}

function bad(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', message, { retryable: false });
}

/** Sorts loose items into keys, prefixes (ending in `/`) and globs (containing `*`, `?`). */
export function manifestFromItems(items: readonly string[]): Manifest {
  const keys: string[] = [];
  const prefixes: string[] = [];
  const globs: string[] = [];
  for (const item of items) {
    if (typeof item !== 'string' || item === '')
      throw bad(`manifest item ${JSON.stringify(item)} is not a key`);
    if (/[*?]/.test(item)) globs.push(item);
    else if (item.endsWith('/')) prefixes.push(item);
    else keys.push(item);
  }
  return { keys, prefixes, globs };
}

/** Reads a model.json: a URL in `download_files_from` becomes the origin, a path a prefix under it. */
export function manifestFromModelJson(m: ModelJson, baseDir = process.cwd()): Manifest {
  const from = m.download_files_from;
  if (typeof from !== 'string' || from.trim() === '') {
    throw bad('model.json: download_files_from must be a non-empty string (an s3:// URL or a prefix)');
  }
  const to = m.download_files_to;
  if (to !== undefined && (typeof to !== 'string' || to.trim() === '')) {
    throw bad('model.json: download_files_to must be a directory path');
  }
  const cache = to === undefined ? undefined : pathToFileURL(resolve(baseDir, to)).href;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(from)) {
    return { origin: from, prefixes: [''], ...(cache ? { cache } : {}) };
  }
  const prefix = from.replace(/^\/+/, '');
  return {
    prefixes: [prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`],
    ...(cache ? { cache } : {}),
  };
}

/** Accepts a parsed manifest document: a list of items, `{keys, prefixes, globs}`, or a model.json. */
export function parseManifest(doc: unknown, baseDir = process.cwd()): Manifest {
  if (Array.isArray(doc)) return manifestFromItems(doc as string[]);
  if (doc === null || typeof doc !== 'object') {
    throw bad(
      'a manifest is a list of keys/prefixes/globs, an object with keys/prefixes/globs, or a model.json',
    );
  }
  const o = doc as Record<string, unknown>;
  if ('download_files_from' in o) return manifestFromModelJson(o as unknown as ModelJson, baseDir);
  const known = new Set(['keys', 'prefixes', 'globs', 'include', 'exclude', 'origin', 'cache']);
  for (const k of Object.keys(o)) {
    if (!known.has(k))
      throw bad(`manifest: unknown field '${k}' (expected keys, prefixes, globs, include, exclude)`);
  }
  const list = (name: string): string[] => {
    const v = o[name];
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) {
      throw bad(`manifest: '${name}' must be a list of strings`);
    }
    return v as string[];
  };
  const loose = manifestFromItems(list('include'));
  const str = (name: string) => {
    const v = o[name];
    if (v !== undefined && typeof v !== 'string') throw bad(`manifest: '${name}' must be a URL string`);
    return v as string | undefined;
  };
  const origin = str('origin');
  const cache = str('cache');
  const exclude = list('exclude');
  return {
    keys: [...list('keys'), ...(loose.keys ?? [])],
    prefixes: [...list('prefixes'), ...(loose.prefixes ?? [])],
    globs: [...list('globs'), ...(loose.globs ?? [])],
    ...(exclude.length ? { exclude } : {}),
    ...(origin ? { origin } : {}),
    ...(cache ? { cache } : {}),
  };
}

/** Loads a manifest file (`.json`, `.yaml`/`.yml`, or a plain list of items one per line). */
export async function loadManifest(path: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new TierError('INVALID_ARGUMENT', `cannot read manifest ${path}: ${(err as Error).message}`, {
      cause: err,
      retryable: false,
    });
  }
  const ext = extname(path).toLowerCase();
  const baseDir = resolve(path, '..');
  let doc: unknown;
  try {
    if (ext === '.json') doc = JSON.parse(text);
    else if (ext === '.yaml' || ext === '.yml') doc = (await import('yaml')).parse(text);
    else {
      doc = text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'));
    }
  } catch (err) {
    throw new TierError(
      'INVALID_ARGUMENT',
      `manifest ${path} is not valid ${ext.slice(1)}: ${(err as Error).message}`,
      {
        cause: err,
        retryable: false,
      },
    );
  }
  return parseManifest(doc, baseDir);
}

/** Merges manifests (lists concatenated, the first origin/cache wins). */
export function mergeManifests(
  ...ms: readonly (Manifest | undefined)[]
): Manifest & { keys: string[]; prefixes: string[]; globs: string[]; exclude: string[] } {
  const out = {
    keys: [] as string[],
    prefixes: [] as string[],
    globs: [] as string[],
    exclude: [] as string[],
  } as {
    keys: string[];
    prefixes: string[];
    globs: string[];
    exclude: string[];
    origin?: string;
    cache?: string;
  };
  for (const m of ms) {
    if (!m) continue;
    out.keys.push(...(m.keys ?? []));
    out.prefixes.push(...(m.prefixes ?? []));
    out.globs.push(...(m.globs ?? []));
    out.exclude.push(...(m.exclude ?? []));
    out.origin ??= m.origin;
    out.cache ??= m.cache;
  }
  return out;
}

/** Compiles a glob: `**` matches across `/`, `*` and `?` within one segment. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        // `**/` also matches nothing, so `a/**/b` matches `a/b`.
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** A test for `exclude` patterns: globs, or prefixes (ending in `/`); undefined when there are none. */
export function excluder(patterns: readonly string[] | undefined): ((key: string) => boolean) | undefined {
  if (!patterns?.length) return undefined;
  const tests = patterns.map((p): ((k: string) => boolean) => {
    if (/[*?]/.test(p)) {
      const re = globToRegExp(p);
      return (k) => re.test(k);
    }
    return p.endsWith('/') ? (k) => k.startsWith(p) : (k) => k === p;
  });
  return (key) => tests.some((t) => t(key));
}

/** The literal part of a glob before its first wildcard: what to list at the origin. */
export function globPrefix(glob: string): string {
  const i = glob.search(/[*?]/);
  return i < 0 ? glob : glob.slice(0, i);
}

/** One object the manifest names, as the origin reports it. */
export type ResolvedItem = ObjectMeta;

/**
 * Resolves a manifest against the origin: keys are `stat`ed, prefixes and globs
 * listed. Returns the objects sorted by key (each once) and the keys the origin
 * does not have.
 */
export async function resolveManifest(
  origin: Tier,
  manifest: Manifest,
  options: { signal?: AbortSignal } = {},
): Promise<{ items: ObjectMeta[]; missing: string[]; excluded: string[] }> {
  const found = new Map<string, ObjectMeta>();
  const missing: string[] = [];
  const signal = options.signal;
  for (const key of manifest.keys ?? []) assertKey(key, 'manifest');
  const needsList = (manifest.prefixes?.length ?? 0) + (manifest.globs?.length ?? 0) > 0;
  if (needsList && !origin.capability.list) {
    throw new TierError(
      'UNSUPPORTED',
      `origin '${origin.name}' cannot list: name keys, not prefixes or globs`,
      {
        retryable: false,
      },
    );
  }
  for (const key of manifest.keys ?? []) {
    const m = await origin.stat(key, { signal });
    if (m) found.set(key, m);
    else missing.push(key);
  }
  for (const prefix of manifest.prefixes ?? []) {
    for await (const m of origin.list(prefix, { signal })) found.set(m.key, m);
  }
  for (const glob of manifest.globs ?? []) {
    const re = globToRegExp(glob);
    for await (const m of origin.list(globPrefix(glob), { signal })) if (re.test(m.key)) found.set(m.key, m);
  }
  const out = excluder(manifest.exclude);
  const excluded: string[] = [];
  const items = [...found.values()]
    .filter((m) => {
      if (!out?.(m.key)) return true;
      excluded.push(m.key);
      return false;
    })
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { items, missing, excluded: excluded.sort() };
}
