/**
 * `tierkit`: warm, ls, stat, verify, purge, pin, unpin, bake, metrics.
 * Exit codes: 0 success, 1 failure (of some or all objects, or of the
 * environment: origin unreachable, cache not writable), 2 usage error.
 */
import { setMaxListeners } from 'node:events';
import { parseArgs } from 'node:util';
import { formatDuration, parseDuration } from '@tierkit/policy-lru';
import { isTierError, type Tier, type TierError } from '@tierkit/tier-core';
import type { FsTier } from '@tierkit/tier-fs';
import { bake } from './bake.js';
import {
  cacheFromConfig,
  coerce,
  configFromEnv,
  ENV_VARS,
  loadConfigFile,
  mergeConfig,
  originFromConfig,
  stackFromConfig,
  type TierkitConfig,
  usage,
} from './config.js';
import { loadManifest, type Manifest, manifestFromItems, mergeManifests } from './manifest.js';
import { TierkitMetrics } from './metrics.js';
import { ProgressView } from './progress.js';
import { purge, schedulePurge } from './purge.js';
import { formatBytes, formatSeconds } from './util.js';
import { BAD_STATUSES, verify } from './verify.js';
import { warm } from './warm.js';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

type Opt = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };
type Flags = Record<string, string | boolean | string[] | undefined>;

const GLOBAL: Record<string, Opt> = {
  cache: { type: 'string' },
  origin: { type: 'string' },
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
  progress: { type: 'string' },
  'disable-cache': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

interface Command {
  summary: string;
  usage: string;
  options: Record<string, Opt>;
  details: string;
  examples: string[];
  /** The command takes no positional arguments. */
  noArguments?: boolean;
  run(ctx: Ctx): Promise<number>;
}

interface Ctx {
  flags: Flags;
  positionals: string[];
  config: TierkitConfig;
  json: boolean;
  out: (line: string) => void;
  err: (line: string) => void;
  signal: AbortSignal;
}

const WARM_OPTIONS: Record<string, Opt> = {
  manifest: { type: 'string', short: 'm' },
  concurrency: { type: 'string' },
  'max-bytes-in-flight': { type: 'string' },
  'block-size': { type: 'string' },
  'dry-run': { type: 'boolean' },
  'no-checksum': { type: 'boolean' },
  'metrics-port': { type: 'string' },
};

const COMMANDS: Record<string, Command> = {
  warm: {
    summary: 'fetch what a manifest names into the cache (skips what is fresh)',
    usage: 'tierkit warm [KEY|PREFIX/|GLOB …] [--manifest FILE] [options]',
    options: WARM_OPTIONS,
    details: `Objects already cached and still matching the origin (size, ETag) are skipped; changed ones
are fetched again. Each fetched object gets a sha256 recorded for 'tierkit verify'.
  -m, --manifest FILE          JSON/YAML manifest, a Practicus model.json, or one item a line
  --concurrency N              objects fetched at once (default 4)
  --max-bytes-in-flight SIZE   bound on the bytes of objects being fetched at once (default 1GiB)
  --block-size SIZE            fill block size (default 8MiB)
  --dry-run                    list what would be fetched, fetch nothing
  --no-checksum                do not record sha256 checksums
  --metrics-port PORT          serve Prometheus metrics on 127.0.0.1:PORT while warming`,
    examples: [
      'tierkit warm --cache file:///var/cache/models --origin s3://models/llama llama-3-8b/',
      "tierkit warm -c tierkit.yaml --manifest model.json --json | jq '.summary'",
      "tierkit warm --cache /mnt/nvme/models --origin /mnt/nfs/models 'llama-3-8b/*.safetensors'",
    ],
    run: cmdWarm,
  },
  ls: {
    summary: 'list cached objects: key, size, state, last used, pinned',
    usage: 'tierkit ls [PREFIX] [--check]',
    options: { check: { type: 'boolean' } },
    details: `  --check    compare each entry with the origin (state fresh/stale/gone instead of cached)
States: cached (origin identity recorded), unknown (no origin identity), modified (changed
outside tierkit), and with --check: fresh, stale, gone.`,
    examples: [
      'tierkit ls --cache /var/cache/models',
      'tierkit ls llama-3-8b/ --check --origin s3://models --json',
    ],
    run: cmdLs,
  },
  stat: {
    summary: 'show one cached object and its origin',
    usage: 'tierkit stat KEY …',
    options: {},
    details:
      'Prints size, state, last use, pin, stored checksum, and the origin size/ETag when --origin is given.',
    examples: ['tierkit stat --cache /var/cache/models --origin s3://models llama-3-8b/config.json'],
    run: cmdStat,
  },
  verify: {
    summary: 'check cached objects against stored checksums and the origin',
    usage: 'tierkit verify [KEY …] [--prefix P] [--drop] [--seal]',
    options: { prefix: { type: 'string' }, drop: { type: 'boolean' }, seal: { type: 'boolean' } },
    details: `Re-reads every entry (or the KEYs given) and compares its sha256 with the one recorded at warm
time, and its recorded origin size/ETag with the origin's (when --origin is given).
  --prefix P   only keys starting with P
  --drop       delete bad entries (they are fetched again on the next read or warm)
  --seal       record a checksum for entries that have none
Exit status 1 when any entry is bad (corrupt, modified, stale, gone).`,
    examples: [
      'tierkit verify --cache /var/cache/models --origin s3://models',
      'tierkit verify --cache /var/cache/models --drop --json',
    ],
    run: cmdVerify,
  },
  purge: {
    summary: 'drop entries unused for a while and/or down to a byte budget (pinned ones stay)',
    usage: 'tierkit purge [--older-than DURATION] [--max-bytes SIZE] [--every DURATION]',
    options: {
      'older-than': { type: 'string' },
      'purge-unused-after': { type: 'string' },
      'max-bytes': { type: 'string' },
      every: { type: 'string' },
      'check-unused-every': { type: 'string' },
      'metrics-port': { type: 'string' },
    },
    details: `  --older-than D, --purge-unused-after D   drop entries unused for D (30s, 15m, 12h, 1d, 1w, 1h30m)
  --max-bytes SIZE                         then drop least recently used entries down to SIZE
  --every D, --check-unused-every D        keep running and purge every D (until SIGINT/SIGTERM)
  --metrics-port PORT                      with --every: serve Prometheus metrics on 127.0.0.1:PORT`,
    examples: [
      'tierkit purge --cache /var/cache/models --older-than 1w',
      'tierkit purge --cache /var/cache/models --older-than 1w --every 1d   # MLIS-style',
      'tierkit purge --cache /var/cache/models --max-bytes 400GiB',
    ],
    noArguments: true,
    run: cmdPurge,
  },
  pin: {
    summary: 'keep objects from eviction and purges (persists, shared by every process)',
    usage: 'tierkit pin KEY …',
    options: {},
    details: 'A key can be pinned before it is cached. Pins live in <cache>/.tierkit/pins.',
    examples: ['tierkit pin --cache /var/cache/models llama-3-8b/model-00001-of-00004.safetensors'],
    run: (ctx) => cmdPin(ctx, true),
  },
  unpin: {
    summary: 'let objects be evicted and purged again',
    usage: 'tierkit unpin KEY …',
    options: {},
    details: '',
    examples: ['tierkit unpin --cache /var/cache/models llama-3-8b/model-00001-of-00004.safetensors'],
    run: (ctx) => cmdPin(ctx, false),
  },
  bake: {
    summary: 'materialise a manifest into a directory for a container image (starts warm)',
    usage: 'tierkit bake --out DIR [KEY|PREFIX/|GLOB …] [--manifest FILE] [--pin]',
    options: { ...WARM_OPTIONS, out: { type: 'string', short: 'o' }, pin: { type: 'boolean' } },
    details: `Writes a tier-fs cache root into DIR: plain files at their keys' paths plus .tierkit/ metadata
(origin size/ETag, sha256). Point the running container's --cache at DIR and it starts warm.
  -o, --out DIR   target directory (default: model.json's download_files_to)
  --pin           pin every baked object (never evicted or purged in the container)
Takes the warm options too.`,
    examples: [
      'tierkit bake --origin s3://models --out ./image/models llama-3-8b/ --pin',
      'RUN npx tierkit bake --origin s3://models --manifest model.json --out /var/cache/models   # Dockerfile',
    ],
    run: cmdBake,
  },
  metrics: {
    summary: 'print Prometheus metrics of the cache (or serve them)',
    usage: 'tierkit metrics [--metrics-port PORT]',
    options: { 'metrics-port': { type: 'string' } },
    details: `Prints the cache's gauges (bytes, entries, pins) and counters in Prometheus text format.
  --metrics-port PORT   serve /metrics on 127.0.0.1:PORT until SIGINT/SIGTERM instead`,
    examples: [
      'tierkit metrics --cache /var/cache/models',
      'tierkit metrics --cache /var/cache/models --metrics-port 9464',
    ],
    noArguments: true,
    run: cmdMetrics,
  },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return `tierkit — pre-warm, verify, bake and purge tierkit caches

Usage: tierkit <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Stack options (every command):
  --cache URL|DIR      the cache: file:///var/cache/models?maxBytes=200GiB, or a path
  --origin URL|DIR     the origin: s3://bucket/prefix[?endpoint=…&region=…], file:///…, or a path
  -c, --config FILE    YAML or JSON file with these settings (cache, origin, manifest, concurrency,
                       maxBytesInFlight, blockSize, purgeUnusedAfter, checkUnusedEvery, maxBytes, metricsPort)
  --json               one JSON document on stdout (for scripts)
  --progress MODE      bar, plain or none (default: bar on a terminal, plain otherwise)
  --disable-cache      bypass the cache and use the origin directly (TIERKIT_DISABLE_CACHE=1)
  -h, --help           help (tierkit <command> --help for a command)

Environment (overrides the config file; flags override both):
${Object.entries(ENV_VARS)
  .map(
    ([k, v]) => `  ${k.padEnd(28)} ${v}${k === 'TIERKIT_NOW_MS' ? ' (a fixed clock, for tests only)' : ''}`,
  )
  .join('\n')}
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL   for s3:// origins

Exit status: 0 success, 1 failure (some or all objects, or origin/cache unusable), 2 usage error.

Examples:
  tierkit warm --cache /var/cache/models --origin s3://models llama-3-8b/
  tierkit ls --cache /var/cache/models
  tierkit purge --cache /var/cache/models --older-than 1w
`;
}

function commandHelp(name: string, c: Command): string {
  return `tierkit ${name} — ${c.summary}

Usage: ${c.usage} [--cache URL] [--origin URL] [--config FILE] [--json]

${c.details ? `${c.details}\n\n` : ''}Examples:
${c.examples.map((e) => `  ${e}`).join('\n')}

See 'tierkit --help' for the stack options and environment variables.
`;
}

// ---- commands ---------------------------------------------------------------

async function manifestOf(ctx: Ctx): Promise<Manifest> {
  const file = (ctx.flags.manifest as string | undefined) ?? ctx.config.manifest;
  const fromFile = file ? await loadManifest(file) : undefined;
  const m = mergeManifests(manifestFromItems(ctx.positionals), fromFile);
  if (m.keys.length + m.prefixes.length + m.globs.length === 0) {
    throw usage(
      "nothing to warm: name keys, prefixes ('dir/') or globs ('dir/*.safetensors'), or --manifest FILE",
    );
  }
  return m;
}

function warmConfig(ctx: Ctx, m: Manifest): TierkitConfig {
  const f = ctx.flags;
  return mergeConfig(
    { ...(m.origin ? { origin: m.origin } : {}), ...(m.cache ? { cache: m.cache } : {}) },
    ctx.config,
    {
      concurrency:
        f.concurrency === undefined
          ? undefined
          : (coerce('concurrency', f.concurrency, '--concurrency') as number),
      maxBytesInFlight:
        f['max-bytes-in-flight'] === undefined
          ? undefined
          : (coerce('maxBytesInFlight', f['max-bytes-in-flight'], '--max-bytes-in-flight') as number),
      blockSize:
        f['block-size'] === undefined
          ? undefined
          : (coerce('blockSize', f['block-size'], '--block-size') as number),
      metricsPort:
        f['metrics-port'] === undefined
          ? undefined
          : (coerce('metricsPort', f['metrics-port'], '--metrics-port') as number),
    },
  );
}

async function withMetricsServer(ctx: Ctx, metrics: TierkitMetrics, port: number | undefined) {
  if (port === undefined) return undefined;
  const server = await metrics.serve({ port });
  ctx.err(`metrics: ${server.url}`);
  return server;
}

async function cmdWarm(ctx: Ctx): Promise<number> {
  const manifest = await manifestOf(ctx);
  const config = warmConfig(ctx, manifest);
  if (config.disableCache) {
    return disabled(ctx, 'warm');
  }
  const metrics = new TierkitMetrics();
  const warnings = new Map<string, string>();
  const { stack, cache } = stackFromConfig(config, {
    wrapOrigin: (t) => metrics.instrument(t),
    onWarning: (w) => warnings.set(w.key, isTierError(w.error) ? w.error.message : String(w.error)),
  });
  metrics.trackStack(stack);
  if (cache) metrics.trackCache(cache);
  const server = await withMetricsServer(ctx, metrics, config.metricsPort);
  const view = new ProgressView(progressMode(ctx), (s) => process.stderr.write(s));
  try {
    await cache?.ready;
    const summary = await warm(stack, manifest, {
      concurrency: config.concurrency,
      maxBytesInFlight: config.maxBytesInFlight,
      signal: ctx.signal,
      dryRun: ctx.flags['dry-run'] === true,
      checksum: ctx.flags['no-checksum'] !== true,
      onProgress: (p) => view.update(p),
      onItem: (item) => {
        metrics.warmed(item);
        if (ctx.json) return;
        view.clear();
        const why =
          item.reason === 'changed' ? ' (changed at the origin)' : item.reason ? ' (unknown provenance)' : '';
        if (item.status === 'failed') {
          const w = warnings.get(item.key);
          ctx.err(`failed     ${item.key}: ${item.error?.message}${w ? ` (${w})` : ''}`);
        } else ctx.out(`${item.status.padEnd(10)} ${item.key}  ${formatBytes(item.size)}${why}`);
      },
    });
    view.done();
    for (const key of summary.missing)
      ctx.err(`missing    ${key}: not at the origin — check the key and --origin`);
    if (ctx.json) {
      ctx.out(JSON.stringify({ command: 'warm', ...summary }, null, 2));
    } else {
      const rate = summary.elapsedMs > 0 ? (summary.bytesFetched / summary.elapsedMs) * 1000 : 0;
      ctx.out(
        `warmed ${summary.items.length} objects (${formatBytes(summary.bytesTotal)}) in ${formatSeconds(summary.elapsedMs / 1000)}: ` +
          `${summary.fetched} fetched, ${summary.refetched} refetched (changed), ${summary.fresh} fresh (skipped), ` +
          `${summary.failed} failed; ${formatBytes(summary.bytesFetched)} from the origin at ${formatBytes(rate)}/s`,
      );
      if (summary.aborted)
        ctx.err('interrupted: run the same command again to finish (fetched blocks are kept)');
    }
    return summary.ok ? EXIT_OK : EXIT_FAILED;
  } finally {
    view.done();
    await server?.close();
    await stack.close();
  }
}

async function cmdBake(ctx: Ctx): Promise<number> {
  const manifest = await manifestOf(ctx);
  const config = warmConfig(ctx, manifest);
  const outDir =
    (ctx.flags.out as string | undefined) ?? (manifest.cache ? new URL(manifest.cache).pathname : undefined);
  if (!outDir) throw usage('bake needs --out DIR (or a model.json with download_files_to)');
  const metrics = new TierkitMetrics();
  const origin = metrics.instrument(originFromConfig(config));
  const view = new ProgressView(progressMode(ctx), (s) => process.stderr.write(s));
  try {
    const summary = await bake(origin, manifest, outDir, {
      concurrency: config.concurrency,
      maxBytesInFlight: config.maxBytesInFlight,
      blockSize: config.blockSize,
      signal: ctx.signal,
      pin: ctx.flags.pin === true,
      checksum: ctx.flags['no-checksum'] !== true,
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

/** Keeps the process alive until `signal` aborts (Ctrl-C): unref'd timers and servers alone do not. */
function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const keep = setInterval(() => {}, 1 << 30);
    signal.addEventListener(
      'abort',
      () => {
        clearInterval(keep);
        resolve();
      },
      { once: true },
    );
  });
}

function disabled(ctx: Ctx, what: string): number {
  const msg = `cache disabled (TIERKIT_DISABLE_CACHE / --disable-cache): nothing to ${what}; readers use the origin directly`;
  if (ctx.json) ctx.out(JSON.stringify({ command: what, disabled: true }));
  else ctx.err(msg);
  return EXIT_OK;
}

async function openCache(ctx: Ctx): Promise<FsTier> {
  const cache = cacheFromConfig(ctx.config);
  await cache.ready;
  return cache;
}

function maybeOrigin(ctx: Ctx): Tier | undefined {
  return ctx.config.origin ? originFromConfig(ctx.config) : undefined;
}

function ago(ms: number | undefined, now: number): string {
  if (ms === undefined) return '-';
  const d = Math.max(0, now - ms);
  return d < 1000 ? 'now' : `${formatDuration(Math.floor(d / 1000) * 1000)} ago`;
}

async function cmdLs(ctx: Ctx): Promise<number> {
  const prefix = ctx.positionals[0] ?? '';
  if (ctx.positionals.length > 1) throw usage('ls takes at most one PREFIX');
  if (ctx.config.disableCache) {
    const origin = originFromConfig(ctx.config);
    try {
      const rows = [];
      for await (const m of origin.list(prefix, { signal: ctx.signal }))
        rows.push({ key: m.key, size: m.size, state: 'origin' });
      if (ctx.json) ctx.out(JSON.stringify({ command: 'ls', disabled: true, entries: rows }, null, 2));
      else for (const r of rows) ctx.out(`${r.key}\t${formatBytes(r.size)}\torigin`);
      return EXIT_OK;
    } finally {
      await origin.close();
    }
  }
  const cache = await openCache(ctx);
  const origin = ctx.flags.check ? maybeOrigin(ctx) : undefined;
  if (ctx.flags.check && !origin) {
    await cache.close();
    throw usage('ls --check needs --origin');
  }
  const now = ctx.config.nowMs ?? Date.now();
  try {
    const rows: Record<string, unknown>[] = [];
    for await (const m of cache.list(prefix, { signal: ctx.signal })) {
      const info = await cache.entryInfo(m.key, { signal: ctx.signal });
      if (!info) continue;
      let state: string = info.metadata === 'stale' ? 'modified' : info.source ? 'cached' : 'unknown';
      if (origin && state !== 'modified') {
        const o = await origin.stat(m.key, { signal: ctx.signal });
        state = !o
          ? 'gone'
          : info.source && info.source.size === o.size && info.source.etag === o.etag
            ? 'fresh'
            : 'stale';
      }
      rows.push({
        key: info.key,
        size: info.size,
        state,
        lastUsed: info.lastUsed,
        pinned: info.pinned,
        sha256: info.checksum?.value,
      });
    }
    if (ctx.json)
      ctx.out(JSON.stringify({ command: 'ls', entries: rows, totalBytes: cache.usedBytes }, null, 2));
    else {
      const table = [['KEY', 'SIZE', 'STATE', 'LAST USED', 'PINNED']].concat(
        rows.map((r) => [
          String(r.key),
          formatBytes(r.size as number),
          String(r.state),
          ago(r.lastUsed as number | undefined, now),
          r.pinned ? 'pinned' : '-',
        ]),
      );
      const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
      for (const row of table)
        ctx.out(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
      ctx.out(`${rows.length} entries, ${formatBytes(cache.usedBytes)}`);
    }
    return EXIT_OK;
  } finally {
    await origin?.close();
    await cache.close();
  }
}

async function cmdStat(ctx: Ctx): Promise<number> {
  if (ctx.positionals.length === 0) throw usage('stat needs at least one KEY');
  const cache = ctx.config.disableCache ? undefined : await openCache(ctx);
  const origin = maybeOrigin(ctx);
  let code = EXIT_OK;
  const out: Record<string, unknown>[] = [];
  try {
    for (const key of ctx.positionals) {
      const info = await cache?.entryInfo(key, { signal: ctx.signal });
      const o = await origin?.stat(key, { signal: ctx.signal });
      if (!info && !o) code = EXIT_FAILED;
      out.push({
        key,
        cached: info !== undefined,
        ...(info
          ? {
              size: info.size,
              state: info.metadata === 'stale' ? 'modified' : info.source ? 'cached' : 'unknown',
              lastUsed: info.lastUsed,
              pinned: info.pinned,
              source: info.source,
              sha256: info.checksum?.value,
            }
          : {}),
        ...(origin
          ? { origin: o ? { size: o.size, etag: o.etag, lastModified: o.lastModified } : null }
          : {}),
      });
    }
  } finally {
    await origin?.close();
    await cache?.close();
  }
  if (ctx.json) ctx.out(JSON.stringify({ command: 'stat', entries: out }, null, 2));
  else {
    for (const e of out) {
      ctx.out(`${e.key}`);
      for (const [k, v] of Object.entries(e)) {
        if (k === 'key') continue;
        ctx.out(`  ${k.padEnd(9)} ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`);
      }
    }
  }
  return code;
}

async function cmdVerify(ctx: Ctx): Promise<number> {
  if (ctx.config.disableCache) return disabled(ctx, 'verify');
  const cache = await openCache(ctx);
  const origin = maybeOrigin(ctx);
  try {
    const summary = await verify(cache, {
      origin,
      ...(ctx.positionals.length ? { keys: ctx.positionals } : {}),
      prefix: ctx.flags.prefix as string | undefined,
      drop: ctx.flags.drop === true,
      seal: ctx.flags.seal === true,
      signal: ctx.signal,
      onItem: (i) => {
        if (ctx.json) return;
        const line = `${i.status.padEnd(9)} ${i.key}  ${i.detail}${i.dropped ? ' — dropped' : ''}`;
        if (BAD_STATUSES.has(i.status) || i.status === 'error') ctx.err(line);
        else ctx.out(line);
      },
    });
    if (ctx.json) ctx.out(JSON.stringify({ command: 'verify', ...summary }, null, 2));
    else {
      ctx.out(
        `verified ${summary.items.length} entries: ${summary.ok} ok, ${summary.unchecked} without checksum, ` +
          `${summary.bad} bad, ${summary.errors} errors${summary.dropped ? `, ${summary.dropped} dropped` : ''}`,
      );
      if (summary.bad > 0 && !ctx.flags.drop)
        ctx.err("run 'tierkit verify --drop' to delete bad entries, then warm again");
    }
    return summary.bad + summary.errors > 0 ? EXIT_FAILED : EXIT_OK;
  } finally {
    await origin?.close();
    await cache.close();
  }
}

async function cmdPurge(ctx: Ctx): Promise<number> {
  if (ctx.config.disableCache) return disabled(ctx, 'purge');
  const f = ctx.flags;
  const olderThan = (f['older-than'] ?? f['purge-unused-after']) as string | undefined;
  const every = (f.every ?? f['check-unused-every']) as string | undefined;
  const config = mergeConfig(ctx.config, {
    purgeUnusedAfter:
      olderThan === undefined ? undefined : (coerce('purgeUnusedAfter', olderThan, '--older-than') as string),
    checkUnusedEvery:
      every === undefined ? undefined : (coerce('checkUnusedEvery', every, '--every') as string),
    maxBytes:
      f['max-bytes'] === undefined
        ? undefined
        : (coerce('maxBytes', f['max-bytes'], '--max-bytes') as number),
    metricsPort:
      f['metrics-port'] === undefined
        ? undefined
        : (coerce('metricsPort', f['metrics-port'], '--metrics-port') as number),
  });
  if (config.purgeUnusedAfter === undefined && config.maxBytes === undefined) {
    throw usage('purge needs --older-than DURATION (e.g. 1w) and/or --max-bytes SIZE');
  }
  const cache = await openCache(ctx);
  const options = {
    purgeUnusedAfter: config.purgeUnusedAfter,
    maxBytes: config.maxBytes,
    signal: ctx.signal,
  };
  const report = (r: Awaited<ReturnType<typeof purge>>) => {
    if (ctx.json) {
      ctx.out(JSON.stringify({ command: 'purge', ...r }, null, 2));
      return;
    }
    for (const k of r.idle) ctx.out(`purged  ${k}  (unused for more than ${config.purgeUnusedAfter})`);
    for (const k of r.overBudget)
      ctx.out(`purged  ${k}  (over the ${formatBytes(config.maxBytes ?? 0)} budget)`);
    ctx.out(
      `purged ${r.idle.length + r.overBudget.length} entries: ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}, ${r.entriesAfter} entries left`,
    );
  };
  const metrics = new TierkitMetrics();
  metrics.trackCache(cache);
  try {
    if (config.checkUnusedEvery === undefined) {
      const r = await purge(cache, options);
      report(r);
      return EXIT_OK;
    }
    const server = await withMetricsServer(ctx, metrics, config.metricsPort);
    const sched = schedulePurge(cache, {
      ...options,
      checkUnusedEvery: config.checkUnusedEvery,
      onPurge: (r) => {
        metrics.purged(r);
        report(r);
      },
      onError: (e) => ctx.err(`purge failed: ${(e as Error).message}`),
    });
    ctx.err(`purging every ${formatDuration(parseDuration(config.checkUnusedEvery))}; stop with Ctrl-C`);
    const first = await sched.runNow();
    metrics.purged(first);
    report(first);
    await untilAborted(ctx.signal);
    sched.stop();
    await server?.close();
    return EXIT_OK;
  } finally {
    await cache.close();
  }
}

async function cmdPin(ctx: Ctx, pin: boolean): Promise<number> {
  if (ctx.positionals.length === 0) throw usage(`${pin ? 'pin' : 'unpin'} needs at least one KEY`);
  if (ctx.config.disableCache) return disabled(ctx, pin ? 'pin' : 'unpin');
  const cache = await openCache(ctx);
  try {
    const rows = [];
    for (const key of ctx.positionals) {
      if (pin) await cache.pin(key);
      else await cache.unpin(key);
      const cached = (await cache.stat(key)) !== undefined;
      rows.push({ key, pinned: pin, cached });
      if (!ctx.json) ctx.out(`${pin ? 'pinned  ' : 'unpinned'} ${key}${cached ? '' : '  (not cached yet)'}`);
    }
    if (ctx.json) ctx.out(JSON.stringify({ command: pin ? 'pin' : 'unpin', entries: rows }, null, 2));
    return EXIT_OK;
  } finally {
    await cache.close();
  }
}

async function cmdMetrics(ctx: Ctx): Promise<number> {
  const port =
    ctx.flags['metrics-port'] === undefined
      ? ctx.config.metricsPort
      : (coerce('metricsPort', ctx.flags['metrics-port'], '--metrics-port') as number);
  const metrics = new TierkitMetrics();
  const cache = ctx.config.disableCache ? undefined : await openCache(ctx);
  if (cache) metrics.trackCache(cache);
  try {
    if (port === undefined) {
      process.stdout.write(await metrics.text());
      return EXIT_OK;
    }
    const server = await metrics.serve({ port });
    ctx.err(`serving ${server.url}; stop with Ctrl-C`);
    await untilAborted(ctx.signal);
    await server.close();
    return EXIT_OK;
  } finally {
    await cache?.close();
  }
}

function progressMode(ctx: Ctx): 'bar' | 'plain' | 'none' {
  const p = ctx.flags.progress as string | undefined;
  if (p !== undefined) {
    if (p !== 'bar' && p !== 'plain' && p !== 'none')
      throw usage(`--progress must be bar, plain or none, got '${p}'`);
    return p;
  }
  if (ctx.json) return 'none';
  return process.stderr.isTTY ? 'bar' : 'plain';
}

// ---- main -------------------------------------------------------------------

/** Hints for errors a user can act on. */
function hint(err: TierError): string | undefined {
  const m = err.message;
  if (err.code === 'UNAVAILABLE' && /permission denied/.test(m)) return undefined; // tier-fs says what to do
  if (err.tier === 'origin' || /origin/.test(err.tier ?? '')) {
    return 'check --origin (bucket, prefix, endpoint: ?endpoint=… or AWS_ENDPOINT_URL), the network, and the AWS_* credentials';
  }
  if (err.code === 'CAPACITY') return 'raise the cache maxBytes, purge (tierkit purge) or unpin entries';
  return undefined;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const out = (l: string) => process.stdout.write(`${l}\n`);
  const err = (l: string) => process.stderr.write(`${l}\n`);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic && COMMANDS[topic]) out(commandHelp(topic, COMMANDS[topic]));
    else (name === undefined ? err : out)(mainHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version') {
    out('0.1.0');
    return EXIT_OK;
  }
  const command = COMMANDS[name];
  if (!command) {
    err(
      `tierkit: unknown command '${name}' — commands: ${Object.keys(COMMANDS).join(', ')} (tierkit --help)`,
    );
    return EXIT_USAGE;
  }
  const ac = new AbortController();
  // One signal for the whole run: every operation listens to it.
  setMaxListeners(0, ac.signal);
  const onSignal = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let json = false;
  try {
    let parsed: ReturnType<typeof parseArgs>;
    try {
      parsed = parseArgs({
        args: rest,
        options: { ...GLOBAL, ...command.options },
        allowPositionals: true,
        strict: true,
      });
    } catch (e) {
      throw usage(
        `${(e as Error).message.replace(/\. To specify a positional.*$/s, '')} — see 'tierkit ${name} --help'`,
      );
    }
    const flags = parsed.values as Flags;
    json = flags.json === true;
    if (flags.help) {
      out(commandHelp(name, command));
      return EXIT_OK;
    }
    const configFile = (flags.config as string | undefined) ?? env.TIERKIT_CONFIG;
    const config = mergeConfig(
      configFile ? await loadConfigFile(configFile) : undefined,
      configFromEnv(env),
      {
        cache: flags.cache as string | undefined,
        origin: flags.origin as string | undefined,
        disableCache: flags['disable-cache'] === true ? true : undefined,
      },
    );
    // A stray word is a mistake for commands without arguments (`--older-than 2 weeks`).
    if (command.noArguments && parsed.positionals.length > 0) {
      throw usage(`unexpected argument '${parsed.positionals[0]}' — see 'tierkit ${name} --help'`);
    }
    return await command.run({
      flags,
      positionals: parsed.positionals,
      config,
      json,
      out,
      err,
      signal: ac.signal,
    });
  } catch (e) {
    const isUsage = isTierError(e) && (e.code === 'INVALID_ARGUMENT' || e.code === 'INVALID_KEY');
    const message = e instanceof Error ? e.message : String(e);
    if (json)
      out(JSON.stringify({ command: name, error: { code: isTierError(e) ? e.code : 'UNKNOWN', message } }));
    err(`tierkit ${name}: ${isUsage ? 'usage error' : 'error'}: ${message}`);
    const h = isTierError(e) ? hint(e) : undefined;
    if (h) err(`  hint: ${h}`);
    if (!isTierError(e) && e instanceof Error && env.TIERKIT_DEBUG) err(e.stack ?? '');
    return isUsage ? EXIT_USAGE : EXIT_FAILED;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

// Run when executed as the bin (not when imported by tests).
const self = process.argv[1] ?? '';
if (/(?:^|[\\/])(?:cli\.(?:js|ts|mjs)|tierkit)$/.test(self)) {
  // The AWS SDK warns about future Node versions on every run: noise in an operator's terminal.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Idle keep-alive sockets of an S3 client must not hold the CLI open.
      setTimeout(() => process.exit(code), 500).unref();
    },
    (e) => {
      process.stderr.write(`tierkit: ${(e as Error)?.stack ?? e}\n`);
      process.exitCode = EXIT_FAILED;
    },
  );
}
