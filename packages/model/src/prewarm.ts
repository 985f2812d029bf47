/**
 * Pre-warming: reads byte ranges through a tier (a stack) and drops the
 * bytes, so a block-granular cache ends up holding exactly the blocks those
 * ranges touch. With `Model.rankByteRanges` it warms what one rank will load.
 */
import { setMaxListeners } from 'node:events';
import { abortError, type ByteRange, type Tier, TierError } from '@tierkit/tier-core';
import { invalidArgument } from './errors.js';

export interface PrewarmOptions {
  /** Reads in flight (default 8). */
  readonly concurrency?: number;
  /** Largest read, and the size of each worker's scratch buffer (default 8 MiB). */
  readonly pieceBytes?: number;
  /**
   * Ranges of a file separated by at most this many bytes are read as one
   * (default 64 KiB): a column slice's thousands of small runs become a few
   * reads. Keep it below the stack's block size and no extra block is fetched.
   */
  readonly coalesceBytes?: number;
  /**
   * The block size of the stack being warmed: neighbouring ranges are read
   * as one whenever no untouched block lies between them, so each block is
   * read in as few requests as possible and no other block is fetched
   * (`coalesceBytes` is then unused).
   */
  readonly blockSize?: number;
  readonly signal?: AbortSignal;
  /** Called after each read with the bytes warmed so far. */
  readonly onProgress?: (bytes: number, total: number) => void;
}

export async function prewarmRanges(
  tier: Tier,
  ranges: ReadonlyMap<string, readonly ByteRange[]>,
  options: PrewarmOptions = {},
): Promise<{ bytes: number; requests: number }> {
  const concurrency = options.concurrency ?? 8;
  const pieceBytes = options.pieceBytes ?? 8 * 1024 * 1024;
  for (const [k, v] of [
    ['concurrency', concurrency],
    ['pieceBytes', pieceBytes],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw invalidArgument(`${k} must be an integer ≥ 1, got ${v}`);
  }
  const gap = options.coalesceBytes ?? 64 * 1024;
  if (!Number.isSafeInteger(gap) || gap < 0)
    throw invalidArgument(`coalesceBytes must be an integer ≥ 0, got ${gap}`);
  const block = options.blockSize;
  if (block !== undefined && (!Number.isSafeInteger(block) || block < 1)) {
    throw invalidArgument(`blockSize must be an integer ≥ 1, got ${block}`);
  }
  const pieces: { key: string; offset: number; length: number }[] = [];
  let total = 0;
  for (const [key, list] of ranges) {
    for (const r of coalesce(key, list, gap, block)) {
      for (let at = 0; at < r.length; at += pieceBytes) {
        const length = Math.min(pieceBytes, r.length - at);
        pieces.push({ key, offset: r.offset + at, length });
        total += length;
      }
    }
  }
  const ac = new AbortController();
  setMaxListeners(0, ac.signal);
  const onAbort = () => ac.abort(abortError(options.signal));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let next = 0;
  let bytes = 0;
  let requests = 0;
  try {
    if (options.signal?.aborted) throw abortError(options.signal);
    await Promise.all(
      Array.from({ length: Math.min(concurrency, pieces.length) }, async () => {
        const scratch = new Uint8Array(Math.min(pieceBytes, total));
        try {
          while (next < pieces.length && !ac.signal.aborted) {
            const p = pieces[next++]!;
            const n = await tier.readInto(p.key, scratch.subarray(0, p.length), {
              offset: p.offset,
              length: p.length,
              signal: ac.signal,
            });
            if (n === undefined) {
              throw new TierError('NOT_FOUND', `${p.key}: not found while pre-warming`, {
                key: p.key,
                retryable: false,
              });
            }
            bytes += n;
            requests++;
            options.onProgress?.(bytes, total);
          }
        } catch (err) {
          if (!ac.signal.aborted) ac.abort(err);
          throw err;
        }
      }),
    ).catch((err) => {
      throw ac.signal.reason instanceof Error ? ac.signal.reason : err;
    });
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  return { bytes, requests };
}

/**
 * Sorted ranges, neighbours merged: with a block size, when the blocks they
 * touch are contiguous (the gap lies in blocks read anyway); else when the
 * gap is at most `gap` bytes.
 */
function coalesce(
  key: string,
  list: readonly ByteRange[],
  gap: number,
  block: number | undefined,
): { offset: number; length: number }[] {
  const sorted = list
    .map((r) => {
      if (r.length === undefined)
        throw invalidArgument(`prewarm ranges need a length (${key} at ${r.offset})`);
      return { offset: r.offset, length: r.length };
    })
    .filter((r) => r.length > 0)
    .sort((a, b) => a.offset - b.offset);
  const out: { offset: number; length: number }[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    const joins =
      last &&
      (block
        ? Math.floor(r.offset / block) <= Math.floor((last.offset + last.length - 1) / block) + 1
        : r.offset <= last.offset + last.length + gap);
    if (last && joins) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else out.push({ ...r });
  }
  return out;
}
