export { formatDuration, parseDuration } from './duration.js';
export { LruPolicy, type LruPolicyOptions, type LruPolicyStats } from './lru.js';
export { purgeIdle } from './purge.js';
