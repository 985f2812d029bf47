export * from './tier.js';
export * from './errors.js';
export * from './keys.js';
export * from './ranges.js';
export * from './policy.js';
export * from './bytes.js';
export * from './memory.js';
