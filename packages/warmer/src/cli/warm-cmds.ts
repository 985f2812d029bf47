/** `tierkit warm`, `bake` and `cat`: the commands that move bytes through a stack. */
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { isTierError } from '@tierkit/tier-core';
import { bake } from '../bake.js';
import {
  mergeConfig,
  originFromConfig,
  planTiers,
  stackFromConfig,
  type TierkitConfig,
  usage,
} from '../config.js';
import { globToRegExp, loadManifest, type Manifest, manifestFromItems, mergeManifests } from '../manifest.js';
import { TierkitMetrics } from '../metrics.js';
import { stderrProgress } from '../progress.js';
import { formatBytes, formatSeconds } from '../util.js';
import { type WarmSummary, warm } from '../warm.js';
import {
  type Ctx,
  disabled,
  EXIT_FAILED,
  EXIT_OK,
  flag,
  type Opt,
  progressMode,
  sayUnvalidated,
} from './shared.js';
import { goneFromOrigin, reportCoverage } from './warm-extras.js';
import { cmdWarmTensors, isTensorWarm } from './warm-tensors-cmd.js';

export const WARM_OPTIONS: Record<string, Opt> = {
  manifest: { type: 'string', short: 'm' },
  concurrency: { type: 'string' },
  'max-bytes-in-flight': { type: 'string' },
  'block-size': { type: 'string' },
  'dry-run': { type: 'boolean' },
  'no-checksum': { type: 'boolean' },
  'metrics-port': { type: 'string' },
  'allow-empty': { type: 'boolean' },
  exclude: { type: 'string', multiple: true },
};

/** Flags only `warm` takes (not `bake`): coverage, and dropping what the origin no longer has. */
export const WARM_ONLY_OPTIONS: Record<string, Opt> = {
  check: { type: 'boolean' },
  delete: { type: 'boolean' },
};

/** Flags only `warm` takes (not `bake`): a rank's tensors. */
export const TENSOR_OPTIONS: Record<string, Opt> = {
  tensors: { type: 'string', multiple: true },
  rank: { type: 'string' },
  'world-size': { type: 'string' },
  split: { type: 'string', multiple: true },
};

async function manifestOf(ctx: Ctx): Promise<Manifest> {
  const file = (ctx.flags.manifest as string | undefined) ?? ctx.config.manifest;
  const fromFile = file ? await loadManifest(file) : undefined;
  const exclude = (ctx.flags.exclude as string[] | undefined) ?? [];
  const m = mergeManifests(manifestFromItems(ctx.positionals), fromFile, { exclude });
  if (m.keys.length + m.prefixes.length + m.globs.length === 0) {
    throw usage(
      "nothing to warm: name keys, prefixes ('dir/') or globs ('dir/*.safetensors'), or --manifest FILE",
    );
  }
  return m;
}

/** Settings for warm and bake: a model.json's origin and cache (the lowest layer), the config, the flags. */
function warmConfig(ctx: Ctx, m: Manifest): TierkitConfig {
  // A config that lists tiers says where everything is; a model.json does not override it.
  const fromManifest = ctx.config.tiers
    ? {}
    : { ...(m.origin ? { origin: m.origin } : {}), ...(m.cache ? { cache: m.cache } : {}) };
  return mergeConfig(fromManifest, ctx.config, {
    concurrency: flag(ctx, 'concurrency', 'concurrency'),
    maxBytesInFlight: flag(ctx, 'max-bytes-in-flight', 'maxBytesInFlight'),
    blockSize: flag(ctx, 'block-size', 'blockSize'),
    metricsPort: flag(ctx, 'metrics-port', 'metricsPort'),
  });
}

async function withMetricsServer(ctx: Ctx, metrics: TierkitMetrics, port: number | undefined) {
  if (port === undefined) return undefined;
  const server = await metrics.serve({ port });
  ctx.err(`metrics: ${server.url}`);
  return server;
}

/** The manifest's prefixes and globs that no object matched. */
function unmatchedPatterns(m: Manifest, summary: WarmSummary): string[] {
  // What --exclude left out counts as matched: leaving it out was asked for.
  const keys = [...summary.items.map((i) => i.key), ...summary.excluded];
  const out: string[] = [];
  for (const p of m.prefixes ?? []) if (!keys.some((k) => k.startsWith(p))) out.push(p);
  for (const g of m.globs ?? []) {
    const re = globToRegExp(g);
    if (!keys.some((k) => re.test(k))) out.push(g);
  }
  return out;
}

/** Says once per run that copies were served or kept unvalidated. */
function onceUnvalidated(ctx: Ctx): (origin: string, error: { code: string; message: string }) => void {
  let said = false;
  return (origin, error) => {
    if (said) return;
    said = true;
    sayUnvalidated(ctx, origin, error);
  };
}

export async function cmdWarm(ctx: Ctx): Promise<number> {
  if (isTensorWarm(ctx)) return cmdWarmTensors(ctx, warmConfig(ctx, { keys: [], prefixes: [], globs: [] }));
  const manifest = await manifestOf(ctx);
  const config = warmConfig(ctx, manifest);
  if (config.disableCache) {
    return disabled(ctx, 'warm');
  }
  const metrics = new TierkitMetrics();
  const warnings = new Map<string, string>();
  const unvalidated = onceUnvalidated(ctx);
  const { stack, cache, origin } = await stackFromConfig(config, {
    env: ctx.env,
    wrapOrigin: (t) => metrics.instrument(t),
    onWarning: (w) => warnings.set(w.key, isTierError(w.error) ? w.error.message : String(w.error)),
    onUnvalidated: (n) => unvalidated(n.origin, n.error),
  });
  metrics.trackStack(stack);
  if (cache) metrics.trackCache(cache);
  const server = await withMetricsServer(ctx, metrics, config.metricsPort);
  const check = ctx.flags.check === true;
  const dryRun = check || ctx.flags['dry-run'] === true;
  if (check && ctx.flags.delete) throw usage('--check fetches and deletes nothing: drop --delete', '--check');
  const view = stderrProgress(check ? 'none' : progressMode(ctx));
  try {
    await cache?.ready;
    const summary = await warm(stack, manifest, {
      concurrency: config.concurrency,
      maxBytesInFlight: config.maxBytesInFlight,
      signal: ctx.signal,
      dryRun,
      checksum: ctx.flags['no-checksum'] !== true,
      staleIfError: config.staleIfError === true,
      onProgress: (p) => view.update(p),
      onItem: (item) => {
        metrics.warmed(item);
        if (ctx.json || check) return;
        view.clear();
        const why =
          item.reason === 'changed'
            ? ' (changed at the origin)'
            : item.reason === 'modified'
              ? ' (the cached file was edited in place)'
              : item.reason
                ? ' (unknown provenance)'
                : '';
        if (item.status === 'failed') {
          const w = warnings.get(item.key);
          ctx.err(`failed     ${item.key}: ${item.error?.message}${w ? ` (${w})` : ''}`);
        } else ctx.out(`${item.status.padEnd(11)} ${item.key}  ${formatBytes(item.size)}${why}`);
        // Not a failure (the exit code stays 0): reads of it are served from the origin.
        if (item.status === 'too-large') ctx.err(`warning    ${item.key}: ${item.warning}; not cached`);
      },
    });
    view.done();
    // A prefix or glob that matches nothing is most often a typo: an init container must not start cold silently.
    const unmatched = summary.originError ? [] : unmatchedPatterns(manifest, summary);
    const allowEmpty = ctx.flags['allow-empty'] === true;
    if (!allowEmpty)
      for (const p of unmatched)
        ctx.err(`nothing matches '${p}' at the origin — check it and --origin (or pass --allow-empty)`);
    if (summary.originError) unvalidated(origin.name, summary.originError);
    if (check) return reportCoverage(ctx, summary, allowEmpty ? [] : unmatched);
    // Only when the origin listed what it has, and no pattern came back empty (a typo would drop everything).
    const gone =
      ctx.flags.delete && cache && (allowEmpty || unmatched.length === 0)
        ? await goneFromOrigin(ctx, cache, manifest, summary)
        : [];
    for (const key of gone) {
      if (!dryRun) await cache!.delete(key, { signal: ctx.signal });
      if (!ctx.json) ctx.out(`${dryRun ? 'would delete' : 'deleted'}    ${key}  (no longer at the origin)`);
    }
    for (const key of summary.missing)
      ctx.err(
        summary.originError
          ? `missing    ${key}: not cached, and the origin cannot be reached`
          : `missing    ${key}: not at the origin — check the key and --origin`,
      );
    if (ctx.json) {
      ctx.out(
        JSON.stringify(
          {
            command: 'warm',
            ...summary,
            unmatched,
            ...(ctx.flags.delete ? { deleted: gone } : {}),
            ok: summary.ok && (allowEmpty || unmatched.length === 0),
          },
          null,
          2,
        ),
      );
    } else {
      const rate = summary.elapsedMs > 0 ? (summary.bytesFetched / summary.elapsedMs) * 1000 : 0;
      ctx.out(
        `warmed ${summary.items.length} objects (${formatBytes(summary.bytesTotal)}) in ${formatSeconds(summary.elapsedMs / 1000)}: ` +
          `${summary.fetched} fetched, ${summary.refetched} refetched (changed), ${summary.fresh} fresh (skipped), ` +
          (summary.unvalidated ? `${summary.unvalidated} kept unvalidated (origin unreachable), ` : '') +
          (summary.tooLarge ? `${summary.tooLarge} too large for the cache (not cached), ` : '') +
          `${summary.failed} failed; ${formatBytes(summary.bytesFetched)} from the origin at ${formatBytes(rate)}/s` +
          (ctx.flags.delete
            ? `; ${gone.length} ${dryRun ? 'to delete' : 'deleted'} (gone from the origin)`
            : ''),
      );
      if (summary.aborted)
        ctx.err('interrupted: run the same command again to finish (fetched blocks are kept)');
    }
    return summary.ok && (allowEmpty || unmatched.length === 0) ? EXIT_OK : EXIT_FAILED;
  } finally {
    view.done();
    await server?.close();
    await stack.close();
  }
}

/** The origin's URL for `baked.json`, without any user:password part. */
function originUrlOf(config: TierkitConfig): string | undefined {
  const plan = planTiers(config);
  if (!plan.hasOrigin) return undefined;
  const u = new URL(plan.tiers[plan.tiers.length - 1]!.spec.url.href);
  u.username = '';
  u.password = '';
  return u.href;
}

export async function cmdBake(ctx: Ctx): Promise<number> {
  const manifest = await manifestOf(ctx);
  const config = warmConfig(ctx, manifest);
  const outDir =
    (ctx.flags.out as string | undefined) ?? (manifest.cache ? new URL(manifest.cache).pathname : undefined);
  if (!outDir) throw usage('bake needs --out DIR (or a model.json with download_files_to)', '--out');
  const metrics = new TierkitMetrics();
  const origin = metrics.instrument(await originFromConfig(config, ctx.env));
  const view = stderrProgress(progressMode(ctx));
  try {
    const summary = await bake(origin, manifest, outDir, {
      concurrency: config.concurrency,
      maxBytesInFlight: config.maxBytesInFlight,
      blockSize: config.blockSize,
      signal: ctx.signal,
      pin: ctx.flags.pin === true,
      checksum: ctx.flags['no-checksum'] !== true,
      originUrl: originUrlOf(config),
      onProgress: (p) => view.update(p),
      onItem: (item) => {
        if (ctx.json) return;
        view.clear();
        if (item.status === 'failed') ctx.err(`failed     ${item.key}: ${item.error?.message}`);
        else ctx.out(`${item.status.padEnd(10)} ${item.key}  ${formatBytes(item.size)}`);
      },
    });
    view.done();
    for (const key of summary.missing) ctx.err(`missing    ${key}: not at the origin`);
    if (ctx.json) ctx.out(JSON.stringify({ command: 'bake', ...summary }, null, 2));
    else {
      ctx.out(
        `baked ${summary.items.length} objects (${formatBytes(summary.bytesTotal)}) into ${summary.target}: ` +
          `${summary.fetched + summary.refetched} fetched, ${summary.fresh} already there, ${summary.failed} failed, ${summary.pinned} pinned`,
      );
      ctx.out(
        `use it with: --cache ${summary.target}  (COPY it into the image at the path the app's cache uses)`,
      );
    }
    return summary.ok ? EXIT_OK : EXIT_FAILED;
  } finally {
    view.done();
    await origin.close();
  }
}

/**
 * Reads objects through the stack, as an application would: a cached copy is
 * served (validated as `--validate` says), a missing one fetched and kept.
 */
export async function cmdCat(ctx: Ctx): Promise<number> {
  if (ctx.positionals.length === 0) throw usage('cat needs at least one KEY');
  const outFile = ctx.flags.out as string | undefined;
  if (outFile && ctx.positionals.length > 1) throw usage('cat --out takes one KEY', '--out');
  const unvalidated = onceUnvalidated(ctx);
  const { stack } = await stackFromConfig(ctx.config, {
    env: ctx.env,
    onUnvalidated: (n) => unvalidated(n.origin, n.error),
  });
  let code = EXIT_OK;
  try {
    for (const key of ctx.positionals) {
      const stream = await stack.readStream(key, { signal: ctx.signal });
      if (!stream) {
        ctx.err(`missing    ${key}: neither cached nor at the origin`);
        code = EXIT_FAILED;
        continue;
      }
      if (outFile) await pipeline(stream, createWriteStream(outFile), { signal: ctx.signal });
      else
        await pipeline(stream, async (source: AsyncIterable<Uint8Array>) => {
          for await (const chunk of source) {
            if (!process.stdout.write(chunk))
              await new Promise<void>((r) => process.stdout.once('drain', () => r()));
          }
        });
    }
    return code;
  } finally {
    await stack.close();
  }
}
