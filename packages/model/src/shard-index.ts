/**
 * The Hugging Face sharded-checkpoint index (`model.safetensors.index.json`):
 * `{ "metadata": {...}, "weight_map": { tensor name: shard file name } }`.
 * Shard names are resolved next to the index and must stay inside its folder.
 */
import { keyProblem, type Tier, TierError } from '@tierkit/tier-core';
import { formatError } from './errors.js';
import { readRange } from './source.js';
import type { StatsCounter } from './stats.js';

/** Indexes are a few MB even for the largest models; anything bigger is refused unread. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;

export interface ShardIndex {
  readonly key: string;
  /** Bytes of the index file. */
  readonly size: number;
  readonly metadata: Readonly<Record<string, unknown>>;
  /** Tensor name → key of its shard. */
  readonly weightMap: ReadonlyMap<string, string>;
  /** Shard keys in the order they first appear in the weight map. */
  readonly shards: readonly string[];
}

export function isIndexKey(key: string): boolean {
  return key.endsWith('.index.json');
}

export async function readShardIndex(
  tier: Tier,
  key: string,
  stats: StatsCounter,
  signal?: AbortSignal,
): Promise<ShardIndex> {
  const meta = await tier.stat(key, { signal });
  if (!meta) throw new TierError('NOT_FOUND', `${key}: no such index`, { key, retryable: false });
  if (meta.size > MAX_INDEX_BYTES) {
    throw formatError('HEADER_TOO_LARGE', key, `an index of ${meta.size} bytes is over ${MAX_INDEX_BYTES}`);
  }
  const bytes = await readRange(tier, key, 0, meta.size, { signal, stats });
  return parseShardIndex(key, bytes);
}

export function parseShardIndex(key: string, bytes: Uint8Array): ShardIndex {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw formatError('HEADER_JSON', key, `the index is not JSON: ${(err as Error).message}`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw formatError('INDEX', key, 'the index has no weight_map object');
  }
  const dir = key.includes('/') ? key.slice(0, key.lastIndexOf('/') + 1) : '';
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  const seen = new Set<string>();
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || file.split('/').some((s) => s === '.' || s === '..')) {
      throw formatError('INDEX', key, `weight_map['${name}'] is not a file name inside the index's folder`, {
        tensor: name,
      });
    }
    const shard = dir + file;
    const problem = keyProblem(shard);
    if (problem) throw formatError('INDEX', key, `weight_map['${name}']: ${problem}`, { tensor: name });
    weightMap.set(name, shard);
    if (!seen.has(shard)) {
      seen.add(shard);
      shards.push(shard);
    }
  }
  const metadata = (json as { metadata?: unknown }).metadata;
  return {
    key,
    size: bytes.byteLength,
    metadata: typeof metadata === 'object' && metadata !== null ? (metadata as Record<string, unknown>) : {},
    weightMap,
    shards,
  };
}
