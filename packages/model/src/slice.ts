/**
 * Tensor-parallel slices: rank r of N takes the r-th part of a tensor along
 * one dimension (dim 0: a row split; the last dim: a column split, as
 * Megatron-style sharding does), and the byte runs that part occupies in the
 * file. A dimension of n splits into parts [⌊r·n/N⌋, ⌊(r+1)·n/N⌋): equal
 * when N divides n, off by at most one otherwise.
 */
import { bytesOf } from './dtypes.js';
import { invalidArgument } from './errors.js';
import type { TensorInfo } from './types.js';

export interface SliceSpec {
  /** The dimension to split; negative counts from the last (-1: columns). */
  readonly dim: number;
  readonly rank: number;
  readonly worldSize: number;
}

/** A run of bytes in a file, and where it goes in the slice's buffer. */
export interface ByteRun {
  readonly offset: number;
  readonly length: number;
  /** Offset of these bytes in the (sliced) tensor's buffer. */
  readonly dest: number;
}

export interface TensorPart {
  readonly tensor: TensorInfo;
  /** Shape of what is delivered: the tensor's, or the slice's. */
  readonly shape: readonly number[];
  readonly length: number;
  readonly runs: readonly ByteRun[];
  /** Present for slices: the dimension and its element range [start, end). */
  readonly slice?: { readonly dim: number; readonly start: number; readonly end: number };
}

export function wholeTensor(t: TensorInfo): TensorPart {
  return {
    tensor: t,
    shape: t.shape,
    length: t.length,
    runs: t.length > 0 ? [{ offset: t.offset, length: t.length, dest: 0 }] : [],
  };
}

export function checkRank(rank: number, worldSize: number): void {
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) {
    throw invalidArgument(`worldSize must be an integer ≥ 1, got ${worldSize}`);
  }
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) {
    throw invalidArgument(`rank must be an integer in [0, ${worldSize}), got ${rank}`);
  }
}

export function sliceTensor(t: TensorInfo, spec: SliceSpec): TensorPart {
  checkRank(spec.rank, spec.worldSize);
  const rankCount = t.shape.length;
  const dim = spec.dim < 0 ? rankCount + spec.dim : spec.dim;
  if (!Number.isInteger(spec.dim) || dim < 0 || dim >= rankCount) {
    throw invalidArgument(`tensor '${t.name}' of shape [${t.shape}] has no dimension ${spec.dim}`, {
      tensor: t.name,
    });
  }
  const n = t.shape[dim]!;
  const start = Math.floor((spec.rank * n) / spec.worldSize);
  const end = Math.floor(((spec.rank + 1) * n) / spec.worldSize);
  let outer = 1;
  for (let i = 0; i < dim; i++) outer *= t.shape[i]!;
  let inner = 1;
  for (let i = dim + 1; i < rankCount; i++) inner *= t.shape[i]!;
  const e = t.encoding;
  const runElems = (end - start) * inner;
  const runBytes = bytesOf(e, runElems);
  const skipBytes = bytesOf(e, start * inner);
  const rowBytes = bytesOf(e, n * inner);
  if (runBytes === undefined || skipBytes === undefined || rowBytes === undefined) {
    throw invalidArgument(
      `tensor '${t.name}' (${t.dtype} [${t.shape}]) cannot be split ${spec.worldSize} ways along dimension ${dim}: ` +
        `a part would cut a block of ${e.blockElems} elements`,
      { tensor: t.name },
    );
  }
  const shape = t.shape.map((d, i) => (i === dim ? end - start : d));
  const runs: ByteRun[] = [];
  if (runBytes > 0) {
    if (runBytes === rowBytes) {
      // The part is the whole of each row of this dimension: one contiguous run.
      runs.push({ offset: t.offset, length: t.length, dest: 0 });
    } else {
      for (let o = 0; o < outer; o++) {
        runs.push({ offset: t.offset + o * rowBytes + skipBytes, length: runBytes, dest: o * runBytes });
      }
    }
  }
  return { tensor: t, shape, length: outer * runBytes, runs, slice: { dim, start, end } };
}
