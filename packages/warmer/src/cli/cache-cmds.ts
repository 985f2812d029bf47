/** `tierkit ls`, `stat`, `verify`, `purge`, `pin`, `unpin` and `metrics`: the cache operator's commands. */
import { formatDuration, parseDuration } from '@tierkit/policy-lru';
import { assertKey, type SourceMeta } from '@tierkit/tier-core';
import { coerce, originFromConfig, usage } from '../config.js';
import { globToRegExp, manifestFromItems, resolveManifest } from '../manifest.js';
import { TierkitMetrics } from '../metrics.js';
import { listPartials } from '../partials.js';
import { purge, schedulePurge } from '../purge.js';
import { formatBytes } from '../util.js';
import { BAD_STATUSES, verify } from '../verify.js';
import {
  isLmcache,
  lmcacheLs,
  lmcacheMetrics,
  lmcachePurge,
  lmcacheStat,
  lmcacheVerify,
} from './lmcache-cmds.js';
import {
  type Ctx,
  disabled,
  EXIT_FAILED,
  EXIT_OK,
  flag,
  maybeOrigin,
  openCache,
  untilAborted,
  withFlags,
} from './shared.js';

function ago(ms: number | undefined, now: number): string {
  if (ms === undefined) return '-';
  const d = Math.max(0, now - ms);
  return d < 1000 ? 'now' : `${formatDuration(Math.floor(d / 1000) * 1000)} ago`;
}

type Row = Record<string, unknown> & { key: string; size: number; lastUsed?: number; pinned: boolean };

/** ls's filters (--older-than, --pinned) and order (--sort key|size|used, --reverse). */
function arrange(ctx: Ctx, rows: Row[], now: number): Row[] {
  const older = ctx.flags['older-than'] as string | undefined;
  const idleMs =
    older === undefined
      ? undefined
      : parseDuration(coerce('purgeUnusedAfter', older, '--older-than') as string);
  const sort = (ctx.flags.sort as string | undefined) ?? 'key';
  if (!['key', 'size', 'used'].includes(sort))
    throw usage(`--sort must be key, size or used, got '${sort}'`, '--sort');
  const out = rows.filter(
    (r) => (idleMs === undefined || now - (r.lastUsed ?? 0) >= idleMs) && (!ctx.flags.pinned || r.pinned),
  );
  const by: Record<string, (a: Row, b: Row) => number> = {
    key: (a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0),
    size: (a, b) => b.size - a.size || by.key!(a, b),
    used: (a, b) => (a.lastUsed ?? 0) - (b.lastUsed ?? 0) || by.key!(a, b),
  };
  out.sort(by[sort]);
  if (ctx.flags.reverse) out.reverse();
  return out;
}

/** ls --by-prefix: one line per prefix (the first --depth segments of the key) with totals. */
function printGroups(ctx: Ctx, rows: Row[], now: number): void {
  const depthText = (ctx.flags.depth as string | undefined) ?? '1';
  if (!/^[1-9]\d*$/.test(depthText))
    throw usage(`--depth must be an integer ≥ 1, got '${depthText}'`, '--depth');
  const depth = Number(depthText);
  const groups = new Map<
    string,
    { prefix: string; entries: number; bytes: number; pinned: number; lastUsed?: number }
  >();
  for (const r of rows) {
    const parts = r.key.split('/');
    const prefix = parts.length > depth ? `${parts.slice(0, depth).join('/')}/` : r.key;
    const g = groups.get(prefix) ?? { prefix, entries: 0, bytes: 0, pinned: 0 };
    g.entries++;
    g.bytes += r.size;
    if (r.pinned) g.pinned++;
    if (r.lastUsed !== undefined) g.lastUsed = Math.max(g.lastUsed ?? 0, r.lastUsed);
    groups.set(prefix, g);
  }
  const list = [...groups.values()];
  const sort = (ctx.flags.sort as string | undefined) ?? 'key';
  list.sort(
    sort === 'size'
      ? (a, b) => b.bytes - a.bytes
      : sort === 'used'
        ? (a, b) => (a.lastUsed ?? 0) - (b.lastUsed ?? 0)
        : (a, b) => (a.prefix < b.prefix ? -1 : 1),
  );
  if (ctx.flags.reverse) list.reverse();
  const total = { entries: rows.length, bytes: rows.reduce((n, r) => n + r.size, 0) };
  if (ctx.json) {
    ctx.out(JSON.stringify({ command: 'ls', groups: list, ...total }, null, 2));
    return;
  }
  const table = [['PREFIX', 'ENTRIES', 'SIZE', 'PINNED', 'LAST USED']].concat(
    list.map((g) => [
      g.prefix,
      String(g.entries),
      formatBytes(g.bytes),
      String(g.pinned),
      ago(g.lastUsed, now),
    ]),
  );
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table)
    ctx.out(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
  ctx.out(`${list.length} prefixes, ${total.entries} entries, ${formatBytes(total.bytes)}`);
}

/**
 * Whether a cached copy was checked against a digest its origin stated (the
 * fill verified every byte before publishing), or published `unverified`
 * because the origin offered nothing to check against.
 */
function integrityOf(source: SourceMeta | undefined): { integrity?: 'verified' | 'unverified' } {
  if (!source) return {};
  return { integrity: source.digests && source.digests.length > 0 ? 'verified' : 'unverified' };
}

export async function cmdLs(ctx: Ctx): Promise<number> {
  if (isLmcache(ctx)) return lmcacheLs(ctx);
  const prefix = ctx.positionals[0] ?? '';
  if (ctx.positionals.length > 1) throw usage('ls takes at most one PREFIX');
  if (ctx.config.disableCache) {
    const origin = await originFromConfig(ctx.config, ctx.env);
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
  const origin = ctx.flags.check ? await maybeOrigin(ctx) : undefined;
  if (ctx.flags.check && ctx.flags.partial) {
    await cache.close();
    throw usage('ls --check compares complete entries: drop --partial', '--partial');
  }
  if (ctx.flags.check && !origin) {
    await cache.close();
    throw usage('ls --check needs --origin');
  }
  const now = ctx.config.nowMs ?? Date.now();
  try {
    const rows: Row[] = [];
    // Objects filled only in part (SIZE is the bytes present: what the budget counts); --partial lists only them.
    for (const p of ctx.flags.check ? [] : await listPartials(cache.root, prefix)) {
      rows.push({
        key: p.key,
        size: p.bytesPresent,
        objectSize: p.size,
        state: `partial ${((p.bytesPresent / Math.max(1, p.size)) * 100).toFixed(0)}%`,
        coverage: p.size > 0 ? p.bytesPresent / p.size : 1,
        blocks: p.blocks,
        blocksPresent: p.blocksPresent,
        blockSize: p.blockSize,
        lastUsed: p.lastModified,
        pinned: cache.isPinned(p.key),
      });
    }
    for await (const m of ctx.flags.partial ? [] : cache.list(prefix, { signal: ctx.signal })) {
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
        ...integrityOf(info.source),
        lastUsed: info.lastUsed,
        pinned: info.pinned,
        sha256: info.checksum?.value,
      });
    }
    const shown = arrange(ctx, rows, now);
    if (ctx.flags['by-prefix']) {
      printGroups(ctx, shown, now);
      return EXIT_OK;
    }
    if (ctx.json)
      ctx.out(
        JSON.stringify(
          {
            command: 'ls',
            entries: shown,
            count: shown.length,
            bytes: shown.reduce((n, r) => n + (r.size as number), 0),
            totalBytes: cache.usedBytes,
          },
          null,
          2,
        ),
      );
    else {
      const table = [['KEY', 'SIZE', 'STATE', 'LAST USED', 'PINNED']].concat(
        shown.map((r) => [
          String(r.key),
          formatBytes(r.size as number),
          r.integrity === 'unverified' ? `${r.state} (unverified)` : String(r.state),
          ago(r.lastUsed as number | undefined, now),
          r.pinned ? 'pinned' : '-',
        ]),
      );
      const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
      for (const row of table)
        ctx.out(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
      const filtered = shown.length !== rows.length;
      ctx.out(
        filtered
          ? `${shown.length} of ${rows.length} entries, ${formatBytes(shown.reduce((n, r) => n + (r.size as number), 0))} of ${formatBytes(cache.usedBytes)}`
          : `${rows.length} entries, ${formatBytes(cache.usedBytes)}`,
      );
    }
    return EXIT_OK;
  } finally {
    await origin?.close();
    await cache.close();
  }
}

export async function cmdStat(ctx: Ctx): Promise<number> {
  if (isLmcache(ctx)) return lmcacheStat(ctx);
  if (ctx.positionals.length === 0) throw usage('stat needs at least one KEY');
  const cache = ctx.config.disableCache ? undefined : await openCache(ctx);
  const origin = await maybeOrigin(ctx);
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
              ...integrityOf(info.source),
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
  // --json keeps lastUsed as epoch milliseconds (as `ls --json`); the text says when, and how long ago.
  if (ctx.json) ctx.out(JSON.stringify({ command: 'stat', entries: out }, null, 2));
  else {
    const now = ctx.config.nowMs ?? Date.now();
    for (const e of out) {
      ctx.out(`${e.key}`);
      for (const [k, v] of Object.entries(e)) {
        if (k === 'key') continue;
        const text =
          k === 'lastUsed' && typeof v === 'number'
            ? `${new Date(v).toISOString()} (${ago(v, now)})`
            : typeof v === 'object' && v !== null
              ? JSON.stringify(v)
              : String(v);
        ctx.out(`  ${k.padEnd(9)} ${text}`);
      }
    }
  }
  return code;
}

export async function cmdVerify(ctx: Ctx): Promise<number> {
  if (isLmcache(ctx)) return lmcacheVerify(ctx);
  if (ctx.config.disableCache) return disabled(ctx, 'verify');
  const cache = await openCache(ctx);
  const origin = await maybeOrigin(ctx);
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
      if (summary.dropped > 0)
        ctx.err("dropped entries are fetched again by the next read or 'tierkit warm'");
    }
    // A bad entry that was dropped is repaired (the next warm fetches it): `verify --drop && warm` composes.
    const left = summary.items.filter((i) => BAD_STATUSES.has(i.status) && !i.dropped).length;
    return left + summary.errors > 0 ? EXIT_FAILED : EXIT_OK;
  } finally {
    await origin?.close();
    await cache.close();
  }
}

export async function cmdPurge(ctx: Ctx): Promise<number> {
  if (isLmcache(ctx)) return lmcachePurge(ctx);
  if (ctx.config.disableCache) return disabled(ctx, 'purge');
  const f = ctx.flags;
  const olderThan = (f['older-than'] ?? f['purge-unused-after']) as string | undefined;
  const every = (f.every ?? f['check-unused-every']) as string | undefined;
  const config = withFlags(ctx, {
    purgeUnusedAfter:
      olderThan === undefined ? undefined : (coerce('purgeUnusedAfter', olderThan, '--older-than') as string),
    checkUnusedEvery:
      every === undefined ? undefined : (coerce('checkUnusedEvery', every, '--every') as string),
    maxBytes: flag(ctx, 'max-bytes', 'maxBytes'),
    metricsPort: flag(ctx, 'metrics-port', 'metricsPort'),
  });
  if (config.purgeUnusedAfter === undefined && config.maxBytes === undefined) {
    throw usage('purge needs --older-than DURATION (e.g. 1w) and/or --max-bytes SIZE');
  }
  const cache = await openCache(ctx);
  const dryRun = f['dry-run'] === true;
  if (dryRun && config.checkUnusedEvery !== undefined)
    throw usage('--dry-run runs once: drop --every', '--dry-run');
  const options = {
    purgeUnusedAfter: config.purgeUnusedAfter,
    maxBytes: config.maxBytes,
    signal: ctx.signal,
    ...(dryRun ? { dryRun, now: ctx.config.nowMs ?? Date.now() } : {}),
  };
  const report = (r: Awaited<ReturnType<typeof purge>>) => {
    if (ctx.json) {
      ctx.out(JSON.stringify({ command: 'purge', ...r }, null, 2));
      return;
    }
    const verb = r.dryRun ? 'would purge' : 'purged';
    for (const k of r.idle) ctx.out(`${verb}  ${k}  (unused for more than ${config.purgeUnusedAfter})`);
    for (const k of r.overBudget)
      ctx.out(`${verb}  ${k}  (over the ${formatBytes(config.maxBytes ?? 0)} budget)`);
    ctx.out(
      `${verb} ${r.idle.length + r.overBudget.length} entries: ${formatBytes(r.bytesBefore)} → ${formatBytes(r.bytesAfter)}, ${r.entriesAfter} entries left`,
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
    const server =
      config.metricsPort === undefined ? undefined : await metrics.serve({ port: config.metricsPort });
    if (server) ctx.err(`metrics: ${server.url}`);
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

/**
 * Pins or unpins keys, prefixes (`llama/`) and globs (`llama/*.safetensors`).
 * A prefix or glob covers what is cached under it, and with --origin what the
 * origin has under it too (pinned before it is cached).
 */
export async function cmdPin(ctx: Ctx, pin: boolean): Promise<number> {
  const what = pin ? 'pin' : 'unpin';
  if (ctx.positionals.length === 0) throw usage(`${what} needs at least one KEY, PREFIX/ or GLOB`);
  if (ctx.config.disableCache) return disabled(ctx, what);
  const { keys: named = [], prefixes = [], globs = [] } = manifestFromItems(ctx.positionals);
  for (const key of named) assertKey(key, what);
  const cache = await openCache(ctx);
  const origin = prefixes.length + globs.length > 0 ? await maybeOrigin(ctx) : undefined;
  let code = EXIT_OK;
  try {
    const keys = new Set(named);
    const patterns = { keys: [], prefixes, globs };
    for (const source of origin ? [cache, origin] : [cache]) {
      for (const m of (await resolveManifest(source, patterns, { signal: ctx.signal })).items)
        keys.add(m.key);
    }
    for (const p of [...prefixes, ...globs]) {
      const glob = globs.includes(p) ? globToRegExp(p) : undefined;
      if (![...keys].some((k) => (glob ? glob.test(k) : k.startsWith(p)))) {
        ctx.err(
          `nothing ${origin ? 'cached or at the origin' : 'cached'} matches '${p}'` +
            (origin ? '' : ' (give --origin to pin objects not cached yet)'),
        );
        code = EXIT_FAILED;
      }
    }
    const rows = [];
    for (const key of [...keys].sort()) {
      if (pin) await cache.pin(key);
      else await cache.unpin(key);
      const cached = (await cache.stat(key)) !== undefined;
      rows.push({ key, pinned: pin, cached });
      if (!ctx.json) ctx.out(`${pin ? 'pinned  ' : 'unpinned'} ${key}${cached ? '' : '  (not cached yet)'}`);
    }
    if (ctx.json) ctx.out(JSON.stringify({ command: what, entries: rows }, null, 2));
    return code;
  } finally {
    await origin?.close();
    await cache.close();
  }
}

export async function cmdMetrics(ctx: Ctx): Promise<number> {
  if (isLmcache(ctx)) return lmcacheMetrics(ctx);
  const port = flag<number>(ctx, 'metrics-port', 'metricsPort') ?? ctx.config.metricsPort;
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
