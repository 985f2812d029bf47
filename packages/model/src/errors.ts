/**
 * The errors of model loading, all `TierError`s with stable codes:
 * - `INTEGRITY`: the file is not a well-formed safetensors/GGUF/index file
 *   (`details.reason` says which rule it broke, stable for callers to match on);
 * - `UNSUPPORTED`: well formed, but something this version does not read
 *   (an unknown dtype or GGUF version);
 * - `INVALID_ARGUMENT` / `NOT_FOUND`: the caller asked for something wrong or absent.
 */
import { TierError } from '@tierkit/tier-core';

/** Why a file was refused. Stable: tests and callers match on them. */
export type FormatReason =
  | 'TRUNCATED'
  | 'HEADER_TOO_LARGE'
  | 'HEADER_JSON'
  | 'HEADER_SCHEMA'
  | 'DTYPE_SIZE'
  | 'OFFSETS'
  | 'OVERLAP'
  | 'PAST_END'
  | 'GAP'
  | 'BAD_MAGIC'
  | 'BAD_VALUE'
  | 'ALIGNMENT'
  | 'DUPLICATE'
  | 'INDEX';

export function formatError(
  reason: FormatReason,
  key: string,
  message: string,
  details: Record<string, unknown> = {},
): TierError {
  return new TierError('INTEGRITY', `${key}: ${message}`, {
    key,
    retryable: false,
    details: { reason, ...details },
  });
}

export function unsupported(key: string, message: string, details: Record<string, unknown> = {}): TierError {
  return new TierError('UNSUPPORTED', `${key}: ${message}`, { key, retryable: false, details });
}

export function invalidArgument(message: string, details?: Record<string, unknown>): TierError {
  return new TierError('INVALID_ARGUMENT', message, { retryable: false, details });
}
