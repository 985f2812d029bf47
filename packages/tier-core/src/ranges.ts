import { TierError } from './errors.js';
import type { ByteRange } from './tier.js';

/** A range resolved against an object's size: always inside it. */
export interface ResolvedRange {
  readonly offset: number;
  readonly length: number;
}

function isByteCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/**
 * Resolves `range` against an object of `size` bytes. A range that starts or
 * ends past the end is `INVALID_RANGE`; a zero-length range at any offset up to
 * `size` is allowed.
 */
export function resolveRange(range: ByteRange | undefined, size: number, key?: string): ResolvedRange {
  if (range === undefined) return { offset: 0, length: size };
  const { offset, length } = range;
  if (!isByteCount(offset) || (length !== undefined && !isByteCount(length))) {
    throw new TierError('INVALID_RANGE', `invalid range ${JSON.stringify(range)}: offsets are integers ≥ 0`, {
      key,
      retryable: false,
    });
  }
  if (offset > size) {
    throw new TierError('INVALID_RANGE', `range starts at ${offset}, past the end of a ${size}-byte object`, {
      key,
      retryable: false,
      details: { offset, size },
    });
  }
  const len = length ?? size - offset;
  if (offset + len > size) {
    throw new TierError(
      'INVALID_RANGE',
      `range ${offset}+${len} ends at ${offset + len}, past the end of a ${size}-byte object`,
      { key, retryable: false, details: { offset, length: len, size } },
    );
  }
  return { offset, length: len };
}

/**
 * Resolves a `readInto` request: reads start at `offset` and fill at most the
 * target; an explicit `length` must fit both the target and the object.
 */
export function resolveIntoRange(
  target: Uint8Array,
  offset: number | undefined,
  length: number | undefined,
  size: number,
  key?: string,
): ResolvedRange {
  const start = offset ?? 0;
  if (length !== undefined && isByteCount(length) && length > target.byteLength) {
    throw new TierError(
      'INVALID_RANGE',
      `readInto length ${length} is larger than the ${target.byteLength}-byte target`,
      { key, retryable: false },
    );
  }
  if (length === undefined && isByteCount(start) && start <= size) {
    return { offset: start, length: Math.min(target.byteLength, size - start) };
  }
  return resolveRange({ offset: start, length }, size, key);
}
