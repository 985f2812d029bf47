/**
 * Turns a tensor part's byte runs into read requests: a long run is split
 * into pieces of at most `pieceBytes` read straight into the caller's buffer;
 * runs separated by small gaps (a column slice's rows) are read together into
 * a small scratch buffer and scattered, so a column split is not thousands
 * of tiny requests. Gaps stay under `coalesceBytes`, smaller than a stack's
 * block, so coalescing never touches a block the slice does not.
 */
import { type Tier, TierError, throwIfAborted } from '@tierkit/tier-core';
import { formatError } from './errors.js';
import type { ByteRun, TensorPart } from './slice.js';
import type { StatsCounter } from './stats.js';

export interface Piece {
  readonly file: string;
  readonly offset: number;
  readonly length: number;
  /** Direct pieces land at `dest` in the target; scattered ones are copied run by run. */
  readonly dest: number;
  readonly scatter?: readonly ByteRun[];
}

export interface PieceOptions {
  readonly pieceBytes: number;
  readonly coalesceBytes: number;
  /** Largest scratch span of a scattered read. */
  readonly scatterBytes: number;
}

export function piecesOf(part: TensorPart, o: PieceOptions): Piece[] {
  const file = part.tensor.file;
  const out: Piece[] = [];
  const runs = part.runs;
  let i = 0;
  while (i < runs.length) {
    const first = runs[i]!;
    // Gather neighbours close enough to read with this run in one scratch span.
    let j = i + 1;
    let end = first.offset + first.length;
    while (
      j < runs.length &&
      runs[j]!.offset - end <= o.coalesceBytes &&
      runs[j]!.offset + runs[j]!.length - first.offset <= o.scatterBytes
    ) {
      end = runs[j]!.offset + runs[j]!.length;
      j++;
    }
    if (j - i > 1) {
      const scatter = runs
        .slice(i, j)
        .map((r) => ({ offset: r.offset - first.offset, length: r.length, dest: r.dest }));
      out.push({ file, offset: first.offset, length: end - first.offset, dest: 0, scatter });
    } else {
      for (let at = 0; at < first.length; at += o.pieceBytes) {
        const length = Math.min(o.pieceBytes, first.length - at);
        out.push({ file, offset: first.offset + at, length, dest: first.dest + at });
      }
    }
    i = j;
  }
  return out;
}

/** Reads one piece into `target` (the part's buffer). */
export async function readPiece(
  tier: Tier,
  p: Piece,
  target: Uint8Array,
  stats: StatsCounter,
  signal: AbortSignal | undefined,
): Promise<void> {
  // A piece queued behind others starts no read once the load is over.
  throwIfAborted(signal, p.file);
  const into = p.scatter ? new Uint8Array(p.length) : target.subarray(p.dest, p.dest + p.length);
  const n = await tier.readInto(p.file, into, { offset: p.offset, length: p.length, signal });
  if (n === undefined) {
    throw new TierError('NOT_FOUND', `${p.file}: vanished while its tensors were read`, {
      key: p.file,
      retryable: false,
    });
  }
  stats.read(p.file, n);
  if (n !== p.length) {
    throw formatError('TRUNCATED', p.file, `read ${n} of ${p.length} bytes at ${p.offset}`, {
      offset: p.offset,
      length: p.length,
      n,
    });
  }
  if (p.scatter) {
    for (const r of p.scatter) target.set(into.subarray(r.offset, r.offset + r.length), r.dest);
  }
}
