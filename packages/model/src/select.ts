/**
 * Which tensors a load takes and how: a name/pattern filter, and for
 * tensor-parallel loads the slice rules (first matching rule wins; tensors no
 * rule matches are read whole, i.e. replicated on every rank).
 */
import { TierError } from '@tierkit/tier-core';
import { invalidArgument } from './errors.js';
import { compilePattern, isGlob, type TensorPattern } from './patterns.js';
import { checkRank, sliceTensor, type TensorPart, wholeTensor } from './slice.js';
import type { TensorInfo } from './types.js';

export interface SliceRule {
  readonly pattern: TensorPattern;
  /** Dimension to split along: 0 for rows, -1 (or the last index) for columns. */
  readonly dim: number;
}

export interface SelectOptions {
  /** Names or patterns of the tensors to take (default: all). An exact name that is absent is `NOT_FOUND`. */
  readonly tensors?: readonly TensorPattern[];
  /** This process's rank and the number of ranks, for `slices`. */
  readonly rank?: number;
  readonly worldSize?: number;
  readonly slices?: readonly SliceRule[];
}

/** The parts to load, in file order. */
export function planParts(
  all: readonly TensorInfo[],
  byName: ReadonlyMap<string, TensorInfo>,
  o: SelectOptions,
) {
  let chosen: readonly TensorInfo[] = all;
  if (o.tensors !== undefined) {
    if (!Array.isArray(o.tensors)) throw invalidArgument('tensors must be an array of names or patterns');
    for (const p of o.tensors) {
      if (!isGlob(p) && !byName.has(p as string)) {
        throw new TierError('NOT_FOUND', `the model has no tensor named '${p as string}'`, {
          retryable: false,
        });
      }
    }
    const tests = o.tensors.map(compilePattern);
    chosen = all.filter((t) => tests.some((m) => m(t.name)));
  }
  const rules = (o.slices ?? []).map((r) => {
    if (!Number.isInteger(r.dim)) throw invalidArgument(`slice dim must be an integer, got ${r.dim}`);
    return { match: compilePattern(r.pattern), dim: r.dim };
  });
  const worldSize = o.worldSize ?? 1;
  const rank = o.rank ?? 0;
  checkRank(rank, worldSize);
  return chosen.map((t): TensorPart => {
    const rule = worldSize > 1 ? rules.find((r) => r.match(t.name)) : undefined;
    return rule ? sliceTensor(t, { dim: rule.dim, rank, worldSize }) : wholeTensor(t);
  });
}
