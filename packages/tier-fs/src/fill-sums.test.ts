import { describe } from 'vitest';
import { fillSumsCases } from './fill-sums-cases.js';

describe('block sums taken as bytes are written (the addon: CPU CRC32C instructions)', () => {
  fillSumsCases(
    process.arch === 'x64' ? /^sse4\.2(\+pclmul)?$/ : process.arch === 'arm64' ? /^armv8-crc$/ : /./,
  );
});
