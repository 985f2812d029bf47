import type { Policy } from '@tierkit/tier-core';
import { parseDuration } from './duration.js';

/**
 * Keys of entries unused for longer than `olderThan` (`'1w'`, `'36h'`, or
 * milliseconds), never pinned or in-use ones, least recently used first. Works
 * with any `Policy`. It removes nothing: the caller deletes each entry's data and
 * then calls `policy.remove(key)`, so a failed delete never loses track of bytes.
 */
export function purgeIdle(policy: Policy, olderThan: string | number, now?: number): string[] {
  return policy.idle(parseDuration(olderThan), now);
}
