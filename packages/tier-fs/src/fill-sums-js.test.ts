import { describe, vi } from 'vitest';
import { fillSumsCases } from './fill-sums-cases.js';

// Read once, at the first checksum of this test file's process: the JavaScript fallback,
// as where the addon is not built.
vi.hoisted(() => {
  process.env.TIERKIT_CRC32C = 'js';
});

describe('block sums taken as bytes are written (the JavaScript CRC32C fallback)', () => {
  fillSumsCases(/^js$/);
});
