/**
 * `tierkit ls|stat|verify|purge|metrics --lmcache DIR[,DIR]` (or
 * `--lmcache-config FILE|env`): an LMCache GDS cache directory managed in place
 * through @tierkit/tier-gds (LMCache's GDS backend never evicts). Only what a
 * purge actually unlinked is reported; files LMCache is writing are never touched.
 */
import { formatDuration, parseDuration } from '@tierkit/policy-lru';
import type { LmcacheDirEntry, LmcacheGdsDirectory, PurgeReport } from '@tierkit/tier-gds';
import { coerce, usage } from '../config.js';
import { trackLmcacheDirectory } from '../lmcache-metrics.js';
import { TierkitMetrics } from '../metrics.js';
import { loadOptional } from '../tiers.js';
import { formatBytes } from '../util.js';
import { type Ctx, EXIT_FAILED, EXIT_OK, flag, type Opt, untilAborted } from './shared.js';

type TierGds = typeof import('@tierkit/tier-gds');

export const LMCACHE_OPTIONS: Record<string, Opt> = {
  lmcache: { type: 'string' },
  'lmcache-config': { type: 'string' },
};

/** True when the command is pointed at an LMCache directory (flags or TIERKIT_LMCACHE). */
export function isLmcache(ctx: Ctx): boolean {
  return (
    ctx.flags.lmcache !== undefined ||
    ctx.flags['lmcache-config'] !== undefined ||
    (ctx.env.TIERKIT_LMCACHE ?? '') !== ''
  );
}

async function openDirectory(ctx: Ctx): Promise<LmcacheGdsDirectory> {
  return (await open(ctx)).dir;
}

async function open(ctx: Ctx): Promise<{ dir: LmcacheGdsDirectory; mod: TierGds }> {
  const paths = (ctx.flags.lmcache as string | undefined) ?? ctx.env.TIERKIT_LMCACHE;
  const configFile = ctx.flags['lmcache-config'] as string | undefined;
  if (ctx.flags.lmcache !== undefined && configFile !== undefined)
    throw usage('give --lmcache DIR or --lmcache-config FILE, not both', '--lmcache');
  if (ctx.flags.cache !== undefined)
    throw usage('--cache and --lmcache name two caches: give one', '--cache');
  const mod = await loadOptional<TierGds>('@tierkit/tier-gds', 'LMCache directories (--lmcache)');
  const now = ctx.config.nowMs;
  const options = now === undefined ? {} : { now: () => now };
  if (configFile !== undefined) {
    // `env`: LMCache's own environment (LMCACHE_CONFIG_FILE, LMCACHE_GDS_PATH, …), as LMCache reads it.
    const config = await mod.loadLmcacheConfig(
      configFile === 'env' ? { env: ctx.env } : { file: configFile, env: ctx.env },
    );
    return { dir: mod.LmcacheGdsDirectory.fromLmcacheConfig(config, options), mod };
  }
  if (!paths?.trim()) throw usage('--lmcache needs a directory (a gds_path: DIR[,DIR])', '--lmcache');
  return { dir: new mod.LmcacheGdsDirectory({ ...options, paths: paths.split(',') }), mod };
}

function state(e: LmcacheDirEntry): string {
  return !e.hasData ? 'metadata-only' : e.hasMetadata ? 'complete' : 'no-metadata';
}

function row(e: LmcacheDirEntry) {
  return {
    key: e.key,
    size: e.dataBytes + e.metadataBytes,
    dataBytes: e.dataBytes,
    metadataBytes: e.metadataBytes,
    state: state(e),
    lastUsed: new Date(e.lastUsedMs).toISOString(),
    path: e.hasData ? e.dataPath : e.metadataPath,
  };
}

export async function lmcacheLs(ctx: Ctx): Promise<number> {
  if (ctx.positionals.length > 1) throw usage('ls takes at most one PREFIX');
  const prefix = ctx.positionals[0] ?? '';
  const dir = await openDirectory(ctx);
  const rows = (await dir.entries(ctx.signal))
    .filter((e) => e.key.startsWith(prefix))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map(row);
  const totalBytes = rows.reduce((n, r) => n + r.size, 0);
  if (ctx.json) {
    ctx.out(JSON.stringify({ command: 'ls', lmcache: dir.layout.roots, entries: rows, totalBytes }, null, 2));
    return EXIT_OK;
  }
  const table = [['KEY', 'SIZE', 'STATE', 'LAST USED']].concat(
    rows.map((r) => [r.key, formatBytes(r.size), r.state, r.lastUsed]),
  );
  const widths = table[0]!.map((_, i) => Math.max(...table.map((t) => t[i]!.length)));
  for (const t of table) ctx.out(t.map((c, i) => (i === t.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  ctx.out(`${rows.length} entries, ${formatBytes(totalBytes)}`);
  return EXIT_OK;
}

export async function lmcacheStat(ctx: Ctx): Promise<number> {
  if (ctx.positionals.length === 0) throw usage('stat needs at least one KEY');
  const dir = await openDirectory(ctx);
  let code = EXIT_OK;
  const out: Record<string, unknown>[] = [];
  for (const key of ctx.positionals) {
    const e = await dir.stat(key);
    if (!e) {
      code = EXIT_FAILED;
      out.push({ key, cached: false });
      continue;
    }
    out.push({
      ...row(e),
      cached: true,
      ...(e.header
        ? {
            dtype: e.header.dtype,
            shape: e.header.shape,
            metadata: e.header.metadata,
            ...(e.header.unloadable ? { unloadable: e.header.unloadable } : {}),
          }
        : {}),
    });
  }
  if (ctx.json) ctx.out(JSON.stringify({ command: 'stat', entries: out }, null, 2));
  else
    for (const e of out) {
      ctx.out(String(e.key));
      for (const [k, v] of Object.entries(e)) {
        if (k === 'key') continue;
        ctx.out(`  ${k.padEnd(13)} ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`);
      }
    }
  return code;
}

export async function lmcacheVerify(ctx: Ctx): Promise<number> {
  for (const f of ['drop', 'seal'])
    if (ctx.flags[f])
      throw usage(
        `verify --${f} is not for an LMCache directory: 'tierkit purge --lmcache …' repairs half entries (a missing .metadata is written from the data's header, an orphan .metadata removed)`,
        `--${f}`,
      );
  const prefix = (ctx.flags.prefix as string | undefined) ?? '';
  const { dir, mod } = await open(ctx);
  const entries = (await dir.entries(ctx.signal)).filter((e) => e.key.startsWith(prefix));
  let problems = await dir.verify(prefix, ctx.signal);
  const keys = ctx.positionals;
  if (keys.length) {
    const wanted = new Set(keys.map((k) => mod.canonicalKey(k)));
    problems = problems.filter((p) => wanted.has(p.key));
    for (const k of keys) {
      if (!(await dir.stat(k))) problems.push({ key: k, path: '', problem: 'not in the directory' });
    }
  }
  const checked = keys.length ? keys.length : entries.length;
  if (ctx.json) {
    ctx.out(
      JSON.stringify(
        { command: 'verify', lmcache: dir.layout.roots, checked, problems, ok: problems.length === 0 },
        null,
        2,
      ),
    );
  } else {
    for (const p of problems) ctx.err(`bad       ${p.key}  ${p.problem}${p.path ? `  (${p.path})` : ''}`);
    ctx.out(`verified ${checked} entries: ${problems.length} problems`);
    if (problems.length)
      ctx.err("run 'tierkit purge --lmcache …' to repair half entries (or remove the files named)");
  }
  return problems.length ? EXIT_FAILED : EXIT_OK;
}

export async function lmcachePurge(ctx: Ctx): Promise<number> {
  const f = ctx.flags;
  const olderThan = (f['older-than'] ?? f['purge-unused-after']) as string | undefined;
  const every = (f.every ?? f['check-unused-every']) as string | undefined;
  const olderThanMs =
    olderThan === undefined
      ? undefined
      : parseDuration(coerce('purgeUnusedAfter', olderThan, '--older-than') as string);
  const everyMs =
    every === undefined ? undefined : parseDuration(coerce('checkUnusedEvery', every, '--every') as string);
  const maxBytes = flag<number>(ctx, 'max-bytes', 'maxBytes');
  const port = flag<number>(ctx, 'metrics-port', 'metricsPort');
  if (olderThanMs === undefined && maxBytes === undefined)
    throw usage('purge needs --older-than DURATION (e.g. 1w) and/or --max-bytes SIZE');
  const dryRun = f['dry-run'] === true;
  if (dryRun && everyMs !== undefined) throw usage('--dry-run runs once: drop --every', '--dry-run');
  const { dir, mod } = await open(ctx);
  const options = {
    ...(maxBytes !== undefined ? { maxBytes } : {}),
    ...(olderThanMs !== undefined ? { olderThanMs } : {}),
    dryRun,
    signal: ctx.signal,
  };
  const report = (r: PurgeReport) => {
    if (ctx.json) {
      ctx.out(JSON.stringify({ command: 'purge', lmcache: dir.layout.roots, dryRun, ...r }));
      return;
    }
    for (const x of r.removed)
      ctx.out(`${dryRun ? 'would purge' : 'purged'}  ${x.key}  ${formatBytes(x.bytes)}`);
    ctx.out(
      `${dryRun ? 'would purge' : 'purged'} ${r.removed.length} entries: ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}, ` +
        `${r.entriesAfter} entries left` +
        (r.healed ? `, ${r.healed} .metadata repaired` : '') +
        (r.skipped ? `, ${r.skipped} left (rewritten by LMCache meanwhile)` : ''),
    );
  };
  if (everyMs === undefined) {
    report(await dir.purge(options));
    return EXIT_OK;
  }
  const metrics = new TierkitMetrics();
  trackLmcacheDirectory(metrics, dir);
  const server = port === undefined ? undefined : await metrics.serve({ port });
  if (server) ctx.err(`metrics: ${server.url}`);
  const { signal: _signal, ...loop } = options;
  const purger = mod.startLmcachePurger(dir, {
    ...loop,
    everyMs,
    onReport: report,
    onError: (e) => ctx.err(`purge failed: ${(e as Error).message}`),
  });
  ctx.err(
    `purging ${dir.layout.roots.join(',')} every ${formatDuration(everyMs)}; stop with SIGTERM or Ctrl-C`,
  );
  try {
    await untilAborted(ctx.signal);
  } finally {
    // Waits for a run in progress: a purge is never cut between a .metadata and its data.
    await purger.stop();
    await server?.close();
  }
  ctx.err('stopped');
  return EXIT_OK;
}

export async function lmcacheMetrics(ctx: Ctx): Promise<number> {
  const port = flag<number>(ctx, 'metrics-port', 'metricsPort') ?? ctx.config.metricsPort;
  const dir = await openDirectory(ctx);
  const metrics = new TierkitMetrics();
  trackLmcacheDirectory(metrics, dir);
  if (port === undefined) {
    process.stdout.write(await metrics.text());
    return EXIT_OK;
  }
  const server = await metrics.serve({ port });
  ctx.err(`serving ${server.url}; stop with Ctrl-C`);
  await untilAborted(ctx.signal);
  await server.close();
  return EXIT_OK;
}
