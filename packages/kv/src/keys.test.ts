import { isValidKey } from '@tierkit/tier-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeName, type KvKeyParts, kvKey, kvKeyPrefix, parseKvKey } from './keys.js';

const H = 'ab'.repeat(32);
const base = { worldSize: 8, workerId: 3, hash: H };

describe('kv keys', () => {
  it('maps model, ranks, tags and hash onto a valid tier key', () => {
    expect(kvKey({ ...base, model: 'meta-llama/Llama-3.1-8B-Instruct' })).toBe(
      `kv/meta-llama%2FLlama-3.1-8B-Instruct/ws8-w3/ab/${H}`,
    );
    expect(kvKey({ ...base, model: 'm', tags: { lora: 'x/1', dtype: 'bf16' } }, 'cache/kv')).toBe(
      `cache/kv/m/ws8-w3/dtype=bf16,lora=x%2F1/ab/${H}`,
    );
  });

  it('keeps hostile model names inside one safe segment', () => {
    for (const model of [
      '..',
      '.',
      '.tierkit',
      'a/../../etc',
      '/abs',
      'a\\b',
      'nul\u0000x',
      'sp ace',
      'ü名前',
      '%2F',
      '~',
    ]) {
      const key = kvKey({ ...base, model });
      expect(isValidKey(key)).toBe(true);
      expect(key.split('/')).toHaveLength(5);
      expect(key.split('/')[1]!.startsWith('.')).toBe(false);
      expect(parseKvKey(key)).toEqual({ ...base, model });
    }
  });

  it('is one-to-one (property): different identities, different keys; keys parse back', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }),
        fc.string({ minLength: 1, maxLength: 60 }),
        (a, b) => {
          fc.pre(a.isWellFormed() && b.isWellFormed());
          const ka = kvKey({ ...base, model: a });
          expect(isValidKey(ka)).toBe(true);
          // A name too long once encoded is shortened with a digest: still distinct, but not reversible.
          const shortened = encodeName(a).includes('~');
          expect(parseKvKey(ka)?.model).toBe(shortened ? undefined : a);
          if (a !== b) expect(kvKey({ ...base, model: b })).not.toBe(ka);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('shortens very long names with a digest and stays valid and distinct', () => {
    const long1 = 'x'.repeat(300);
    const long2 = `${'x'.repeat(299)}y`;
    const k1 = kvKey({ ...base, model: long1 });
    const k2 = kvKey({ ...base, model: long2 });
    expect(isValidKey(k1)).toBe(true);
    expect(k1).not.toBe(k2);
    expect(encodeName(long1).length).toBeLessThanOrEqual(200);
    expect(parseKvKey(k1)).toBeUndefined(); // cannot be reversed, and says so
  });

  it('does not depend on tag order', () => {
    const a = kvKeyPrefix({ model: 'm', worldSize: 1, workerId: 0, tags: { b: '2', a: '1' } });
    const b = kvKeyPrefix({ model: 'm', worldSize: 1, workerId: 0, tags: { a: '1', b: '2' } });
    expect(a).toBe(b);
    expect(parseKvKey(`${a}ab/${H}`)?.tags).toEqual({ a: '1', b: '2' });
  });

  it('refuses bad parts with INVALID_ARGUMENT', () => {
    const bad: KvKeyParts[] = [
      { ...base, model: '' },
      { ...base, model: 'm', workerId: 8 },
      { ...base, model: 'm', worldSize: 0 },
      { ...base, model: 'm', workerId: -1 },
      { ...base, model: 'm', hash: 'AB'.repeat(32) },
      { ...base, model: 'm', hash: 'ab' },
      { ...base, model: 'm', tags: { '': 'x' } },
      { ...base, model: 'm', tags: { a: 'v'.repeat(300), b: 'w'.repeat(300) } },
    ];
    for (const parts of bad) {
      expect(() => kvKey(parts)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    expect(() => kvKey({ ...base, model: 'm' }, '../x')).toThrow(
      expect.objectContaining({ code: 'INVALID_KEY' }),
    );
  });

  it('does not parse foreign keys', () => {
    expect(parseKvKey('kv/m/ws1-w0/zz/abc')).toBeUndefined();
    expect(parseKvKey(`kv/m/ws1-w0/cd/${H}`)).toBeUndefined();
    expect(parseKvKey(`other/m/ws1-w0/ab/${H}`)).toBeUndefined();
  });
});
