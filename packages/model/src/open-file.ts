/**
 * Opens one model file through a tier: a stat, one ranged read of the first
 * `probeBytes` (enough for most headers), and for a longer header one more
 * read (safetensors) or a few growing ones (GGUF). The format is told by the
 * file's first bytes, not its name.
 */
import { type Tier, TierError } from '@tierkit/tier-core';
import { formatError, invalidArgument } from './errors.js';
import { GGUF_MAGIC, parseGguf } from './gguf.js';
import { parseSafetensorsHeader, SAFETENSORS_MAX_HEADER, safetensorsHeaderLength } from './safetensors.js';
import { HeaderWindow, readRange } from './source.js';
import type { StatsCounter } from './stats.js';
import type { ModelFile } from './types.js';

export interface OpenFileOptions {
  readonly signal?: AbortSignal;
  /** Largest header accepted (default: 100 MB for safetensors, as its reference reader; 256 MiB for GGUF). */
  readonly maxHeaderBytes?: number;
  /** Bytes read at once to find the header (default 256 KiB). */
  readonly probeBytes?: number;
}

const GGUF_MAX_HEADER = 256 * 1024 * 1024;
export const DEFAULT_PROBE_BYTES = 256 * 1024;

export async function openModelFile(
  tier: Tier,
  key: string,
  stats: StatsCounter,
  options: OpenFileOptions = {},
): Promise<ModelFile> {
  const probe = options.probeBytes ?? DEFAULT_PROBE_BYTES;
  if (!Number.isSafeInteger(probe) || probe < 16) throw invalidArgument(`probeBytes must be an integer ≥ 16`);
  const max = options.maxHeaderBytes;
  if (max !== undefined && (!Number.isSafeInteger(max) || max < 16)) {
    throw invalidArgument(`maxHeaderBytes must be an integer ≥ 16`);
  }
  const meta = await tier.stat(key, { signal: options.signal });
  if (!meta) throw new TierError('NOT_FOUND', `${key}: no such model file`, { key, retryable: false });
  const src = { signal: options.signal, stats };
  if (meta.size < 8) {
    throw formatError('TRUNCATED', key, `${meta.size} bytes cannot hold a model header`, { size: meta.size });
  }
  const first = await readRange(tier, key, 0, Math.min(meta.size, probe), src);
  const magic = new DataView(first.buffer, first.byteOffset, 4).getUint32(0, true);
  if (magic === GGUF_MAGIC) {
    const window = new HeaderWindow(tier, key, meta.size, max ?? GGUF_MAX_HEADER, first, src);
    return parseGguf(window, meta.etag);
  }
  const n = safetensorsHeaderLength(key, first, meta.size, max ?? SAFETENSORS_MAX_HEADER);
  const header =
    8 + n <= first.byteLength
      ? first.subarray(8, 8 + n)
      : concat(
          first.subarray(8),
          await readRange(tier, key, first.byteLength, 8 + n - first.byteLength, src),
        );
  return parseSafetensorsHeader(key, header, meta.size, meta.etag);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
