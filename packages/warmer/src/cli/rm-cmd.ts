/** `tierkit rm KEY|PREFIX/|GLOB …`: remove cached objects (as `hf cache rm`); the origin is never touched. */
import { assertKey } from '@tierkit/tier-core';
import { usage } from '../config.js';
import { globToRegExp, manifestFromItems, resolveManifest } from '../manifest.js';
import { formatBytes } from '../util.js';
import { type Ctx, disabled, EXIT_FAILED, EXIT_OK, openCache } from './shared.js';

export async function cmdRm(ctx: Ctx): Promise<number> {
  if (ctx.positionals.length === 0) throw usage('rm needs at least one KEY, PREFIX/ or GLOB');
  if (ctx.config.disableCache) return disabled(ctx, 'rm');
  const { keys = [], prefixes = [], globs = [] } = manifestFromItems(ctx.positionals);
  for (const key of keys) assertKey(key, 'rm');
  const dryRun = ctx.flags['dry-run'] === true;
  const allowEmpty = ctx.flags['allow-empty'] === true;
  const cache = await openCache(ctx);
  let code = EXIT_OK;
  try {
    const { items, missing } = await resolveManifest(
      cache,
      { keys, prefixes, globs },
      { signal: ctx.signal },
    );
    const unmatched = [
      ...missing,
      ...prefixes.filter((p) => !items.some((m) => m.key.startsWith(p))),
      ...globs.filter((g) => !items.some((m) => globToRegExp(g).test(m.key))),
    ];
    if (!allowEmpty) {
      for (const p of unmatched) ctx.err(`nothing cached matches '${p}'`);
      if (unmatched.length) code = EXIT_FAILED;
    }
    const removed: { key: string; size: number; pinned: boolean }[] = [];
    for (const m of items) {
      const pinned = cache.isPinned(m.key);
      if (!dryRun) {
        await cache.delete(m.key, { signal: ctx.signal });
        // A removed object is not kept from eviction any more: its pin goes with it.
        if (pinned) await cache.unpin(m.key);
      }
      removed.push({ key: m.key, size: m.size, pinned });
      if (!ctx.json)
        ctx.out(
          `${dryRun ? 'would remove' : 'removed'}  ${m.key}  ${formatBytes(m.size)}${pinned ? '  (was pinned)' : ''}`,
        );
    }
    const bytes = removed.reduce((n, r) => n + r.size, 0);
    if (ctx.json)
      ctx.out(
        JSON.stringify({ command: 'rm', dryRun, removed, bytes, unmatched, ok: code === EXIT_OK }, null, 2),
      );
    else ctx.out(`${dryRun ? 'would remove' : 'removed'} ${removed.length} objects, ${formatBytes(bytes)}`);
    return code;
  } finally {
    await cache.close();
  }
}
