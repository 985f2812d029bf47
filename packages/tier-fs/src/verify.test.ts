import { describe, expect, it } from 'vitest';
import { FsTier, fsTierFromUrl } from './fs-tier.js';
import { decodeSums, encodeSums } from './verify.js';
import { verifyCases } from './verify-cases.js';

describe('verified reads (the addon: CPU CRC32C instructions)', () => {
  verifyCases(
    process.arch === 'x64' ? /^sse4\.2(\+pclmul)?$/ : process.arch === 'arm64' ? /^armv8-crc$/ : /./,
  );
});

describe('block sums in the sidecar', () => {
  it('round-trip, and a record for another size is refused', () => {
    const sums = Uint32Array.from([0, 1, 0xe3069283, 0xffffffff]);
    const rec = encodeSums(sums, 1024);
    expect([...decodeSums(rec, 4 * 1024)!]).toEqual([...sums]);
    expect([...decodeSums(rec, 3 * 1024 + 1)!]).toEqual([...sums]);
    expect(decodeSums(rec, 3 * 1024)).toBeUndefined();
    expect(decodeSums({ size: 0, crc32c: rec.crc32c }, 0)).toBeUndefined();
    expect(decodeSums(undefined, 10)).toBeUndefined();
  });
});

describe('the verify option', () => {
  it("is resolved once at construction: 'first' by default, from a URL, and refused when unknown", async () => {
    const dflt = new FsTier({ root: '/tmp/tierkit-verify-option-a', create: false });
    expect(dflt.verify.mode).toBe('first');
    const fromUrl = fsTierFromUrl('file:///tmp/tierkit-verify-option-b?verify=always&create=false');
    expect(fromUrl.verify.mode).toBe('always');
    expect(() => new FsTier({ root: '/tmp/x', verify: 'sometimes' as 'never' })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    await dflt.close().catch(() => {});
    await fromUrl.close().catch(() => {});
  });
});
