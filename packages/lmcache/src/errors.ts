import { TierError } from '@tierkit/tier-core';

/** A value LMCache would refuse (or misread): INVALID_ARGUMENT, never retryable. */
export function lmcacheInvalid(message: string, details?: Record<string, unknown>): TierError {
  return new TierError('INVALID_ARGUMENT', message, { retryable: false, ...(details ? { details } : {}) });
}
