import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isValidKey, keyProblem, MAX_KEY_BYTES, MAX_SEGMENT_BYTES } from './keys.js';

/** The rules, written the slow, obvious way: the fast checker must agree with it. */
function reference(key: string): boolean {
  const enc = new TextEncoder();
  const control = [...key].some(
    (c) => c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) <= 0x9f),
  );
  if (key.length === 0 || control) return false;
  if (key.includes('\\') || key.startsWith('/') || !key.isWellFormed()) return false;
  if (enc.encode(key).byteLength > MAX_KEY_BYTES) return false;
  return key
    .split('/')
    .every((s) => s !== '' && s !== '.' && s !== '..' && enc.encode(s).byteLength <= MAX_SEGMENT_BYTES);
}

describe('keys', () => {
  it('accepts and refuses exactly what the rules say, lengths counted in UTF-8 bytes', () => {
    const unit = fc.constantFrom(
      'a',
      '/',
      '.',
      '..',
      'é',
      '€',
      '😀',
      '\ud800',
      '\\',
      '\u0001',
      'x'.repeat(84),
    );
    const key = fc.array(unit, { maxLength: 40 }).map((parts) => parts.join(''));
    const long = fc
      .tuple(fc.constantFrom('a', 'é', '€', '😀'), fc.integer({ min: 60, max: 400 }), fc.boolean())
      .map(([c, n, nested]) => (nested ? `dir/${c.repeat(n)}` : c.repeat(n)));
    fc.assert(
      fc.property(fc.oneof(key, long), (k) => {
        expect(keyProblem(k) === undefined, JSON.stringify(k)).toBe(reference(k));
      }),
      { numRuns: 3000 },
    );
  });

  it('counts bytes, not characters, at the limits', () => {
    expect(isValidKey('😀'.repeat(63))).toBe(true); // 252 bytes
    expect(isValidKey('😀'.repeat(64))).toBe(false); // 256 bytes in one segment
    expect(isValidKey(`${'€'.repeat(85)}`)).toBe(true); // 255 bytes
    expect(isValidKey(`${'€'.repeat(85)}é`)).toBe(false); // 257
    const key = Array.from({ length: 5 }, () => '€'.repeat(68)).join('/'); // 5 × 204 + 4 = 1024
    expect(isValidKey(key)).toBe(true);
    expect(isValidKey(`${key}a`)).toBe(false);
    expect(keyProblem('a/./b')).toMatch(/'\.' segment/);
    expect(keyProblem('a/../b')).toMatch(/'\.\.' segment/);
    expect(isValidKey('a/.../b')).toBe(true);
    expect(isValidKey('a/.b/..c')).toBe(true);
  });
});
