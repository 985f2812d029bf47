/**
 * What `warm --check` and `warm --delete` add to a warm: the cache's coverage
 * of a manifest (nothing fetched, as `juicefs warmup --check`), and dropping
 * cached objects the origin no longer has (as `aws s3 sync --delete`).
 */
import type { FsTier } from '@tierkit/tier-fs';
import { type Manifest, resolveManifest } from '../manifest.js';
import { formatBytes } from '../util.js';
import type { WarmSummary } from '../warm.js';
import { type Ctx, EXIT_FAILED, EXIT_OK } from './shared.js';

/** Reports a dry run's summary as coverage; exit 1 unless every object is cached and fresh. */
export function reportCoverage(ctx: Ctx, summary: WarmSummary, unmatched: readonly string[]): number {
  const items = summary.items.map((i) => ({
    key: i.key,
    size: i.size,
    state:
      i.status === 'fresh' || i.status === 'unvalidated'
        ? 'cached'
        : i.status === 'planned'
          ? i.reason
            ? 'stale'
            : 'missing'
          : 'error',
    ...(i.reason ? { reason: i.reason } : {}),
  }));
  const cached = items.filter((i) => i.state === 'cached');
  const bytesCached = cached.reduce((n, i) => n + i.size, 0);
  const bytesTotal = summary.bytesTotal;
  const coverage = bytesTotal > 0 ? bytesCached / bytesTotal : items.length ? 1 : 0;
  const complete = cached.length === items.length && summary.missing.length === 0 && unmatched.length === 0;
  if (ctx.json) {
    ctx.out(
      JSON.stringify(
        {
          command: 'warm',
          check: true,
          coverage,
          objects: items.length,
          objectsCached: cached.length,
          bytesTotal,
          bytesCached,
          items,
          missing: summary.missing,
          unmatched,
          ok: complete,
        },
        null,
        2,
      ),
    );
  } else {
    for (const i of items)
      if (i.state !== 'cached') ctx.out(`${i.state.padEnd(8)} ${i.key}  ${formatBytes(i.size)}`);
    ctx.out(
      `coverage ${(coverage * 100).toFixed(1)}%: ${cached.length}/${items.length} objects, ` +
        `${formatBytes(bytesCached)} of ${formatBytes(bytesTotal)} cached and fresh`,
    );
  }
  return complete ? EXIT_OK : EXIT_FAILED;
}

/**
 * Cached objects under the manifest's prefixes and globs that the origin no
 * longer lists. Keys named one by one are left alone (a missing one is reported
 * as missing), and so is everything when the origin could not be listed.
 */
export async function goneFromOrigin(
  ctx: Ctx,
  cache: FsTier,
  manifest: Manifest,
  summary: WarmSummary,
): Promise<string[]> {
  if (summary.originError) return [];
  const atOrigin = new Set(summary.items.map((i) => i.key));
  const scope = {
    keys: [],
    prefixes: manifest.prefixes ?? [],
    globs: manifest.globs ?? [],
    ...(manifest.exclude ? { exclude: manifest.exclude } : {}),
  };
  if (scope.prefixes.length + scope.globs.length === 0) return [];
  const { items } = await resolveManifest(cache, scope, { signal: ctx.signal });
  return items.map((m) => m.key).filter((k) => !atOrigin.has(k));
}
