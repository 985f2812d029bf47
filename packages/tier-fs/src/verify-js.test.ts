import { describe, vi } from 'vitest';
import { verifyCases } from './verify-cases.js';

// Read once, at the first checksum of this test file's process: the JavaScript fallback,
// as where the addon is not built.
vi.hoisted(() => {
  process.env.TIERKIT_CRC32C = 'js';
});

describe('verified reads (the JavaScript CRC32C fallback)', () => {
  verifyCases(/^js$/);
});
