/**
 * Baking: materialise a manifest into a directory laid out as a tier-fs root,
 * so an image built with it starts with a warm, verified cache.
 */
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createStack, type Tier } from '@tierkit/tier-core';
import { createFsTier } from '@tierkit/tier-fs';
import type { Manifest } from './manifest.js';
import { type WarmOptions, type WarmSummary, warm } from './warm.js';

/** Bookkeeping folders under `.tierkit/` that only a running process needs (emptied, kept). */
const RUNTIME_DIRS = ['tmp', 'locks', 'uses'];

export interface BakeOptions extends WarmOptions {
  /** Pin every baked object so the running container never evicts or purges it (default false). */
  readonly pin?: boolean;
  /** Block size of fills (default the stack's, 8 MiB). */
  readonly blockSize?: number;
  /**
   * The origin's URL, recorded in `.tierkit/baked.json` (default: worked out
   * from a directory or S3 origin, else its tier name).
   */
  readonly originUrl?: string;
}

export interface BakeSummary extends WarmSummary {
  readonly target: string;
  readonly pinned: number;
}

/**
 * Warms `manifest` from `origin` into `target` (a tier-fs root: plain files at
 * their keys' paths, sidecars with the origin's size/ETag and a sha256), then
 * removes run-time leftovers (temp files, locks, the use journal) so the image
 * layer holds only what a reader needs.
 * Incremental: baking again into the same folder fetches only what changed.
 */
export async function bake(
  origin: Tier,
  manifest: Manifest,
  target: string,
  options: BakeOptions = {},
): Promise<BakeSummary> {
  const cache = createFsTier({ root: target, name: 'bake', flushIntervalMs: 0 });
  await cache.ready;
  const stack = createStack([cache, origin], {
    closeTiers: false,
    ...(options.blockSize ? { blockSize: options.blockSize } : {}),
  });
  let summary: WarmSummary;
  let pinned = 0;
  try {
    summary = await warm(stack, manifest, { ...options, checksum: options.checksum ?? true });
    if (options.pin) {
      for (const item of summary.items) {
        if (item.status === 'failed' || item.status === 'planned') continue;
        await cache.pin(item.key);
        pinned++;
      }
    }
  } finally {
    await stack.close();
    await cache.close();
  }
  const meta = join(cache.root, '.tierkit');
  // The image keeps what a reader needs: the objects, their sidecars (meta/), pins and
  // baked.json. The baker's run-time state goes: temp files, locks and their leases, and
  // its use journal (last-use times of a build machine; a reader falls back to the files'
  // times). Partial fills stay only when something failed, so baking again resumes them.
  const failed = summary.items.some((i) => i.status === 'failed');
  for (const dir of failed ? RUNTIME_DIRS : [...RUNTIME_DIRS, 'partial']) {
    for (const name of await readdir(join(meta, dir)).catch(() => [] as string[])) {
      await rm(join(meta, dir, name), { recursive: true, force: true });
    }
  }
  await writeFile(
    join(meta, 'baked.json'),
    `${JSON.stringify(
      {
        bakedAt: new Date().toISOString(),
        origin: options.originUrl ?? originUrlOf(origin),
        objects: summary.items.filter((i) => i.status !== 'failed').length,
        bytes: summary.bytesTotal,
        pinned,
      },
      null,
      2,
    )}\n`,
  );
  return { ...summary, target: cache.root, pinned };
}

/** A directory or S3 origin's URL (tiers do not carry one); other tiers are named. */
function originUrlOf(origin: Tier): string {
  const t = origin as Partial<{ root: string; config: { bucket?: string; prefix?: string } }>;
  if (typeof t.root === 'string') return pathToFileURL(t.root).href;
  if (typeof t.config?.bucket === 'string') return `s3://${t.config.bucket}/${t.config.prefix ?? ''}`;
  return origin.name;
}
