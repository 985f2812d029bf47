import { isTierError } from '@tierkit/tier-core';
import { describe, expect, it } from 'vitest';
import {
  cacheKey,
  chunkHashDecimal,
  chunkHashHex,
  formatCacheKey,
  parseCacheKey,
  pyIntParse,
} from './index.js';

describe('Python int() as LMCache parses key fields and options', () => {
  it('accepts what int() accepts', () => {
    expect(pyIntParse(' 42 ')).toBe(42n);
    expect(pyIntParse('+7')).toBe(7n);
    expect(pyIntParse('-0')).toBe(0n);
    expect(pyIntParse('1_000')).toBe(1000n);
    expect(pyIntParse('007')).toBe(7n);
    expect(pyIntParse('ff', 16)).toBe(255n);
    expect(pyIntParse('0xFF', 16)).toBe(255n);
    expect(pyIntParse('-0x_f', 16)).toBe(-15n);
    expect(pyIntParse('ffffffffffffffffff', 16)).toBe(2n ** 72n - 1n);
  });
  it('refuses what int() refuses', () => {
    for (const s of ['0x100', '1e2', '12.0', '', ' ', '1__0', '_1', '1_', '--1', 'ten', '0b1']) {
      expect(pyIntParse(s), s).toBeUndefined();
    }
    expect(pyIntParse('0x', 16)).toBeUndefined();
    expect(pyIntParse('g', 16)).toBeUndefined();
  });
});

describe('cache keys', () => {
  it('parses and prints the current format exactly as LMCache', () => {
    const k = parseCacheKey('meta-llama/Llama-3.1-8B@1@0@007f3a9c21e0b44d12@bfloat16');
    expect(k).toMatchObject({
      format: 'current',
      modelName: 'meta-llama/Llama-3.1-8B',
      worldSize: 1n,
      workerId: 0n,
      chunkHash: 0x7f3a9c21e0b44d12n,
      dtype: 'bfloat16',
      tags: [],
    });
    // to_string prints f"{h:x}": no leading zeros.
    expect(formatCacheKey(k)).toBe('meta-llama/Llama-3.1-8B@1@0@7f3a9c21e0b44d12@bfloat16');
    expect(chunkHashDecimal(k.chunkHash)).toBe('9167811660783832338');
  });

  it('handles negative hashes like Python (hex "-ff", decimal "-255")', () => {
    const k = parseCacheKey('m@1@0@-ff@half');
    expect(k.chunkHash).toBe(-255n);
    expect(chunkHashHex(k.chunkHash)).toBe('-ff');
    expect(chunkHashDecimal(k.chunkHash)).toBe('-255');
    expect(formatCacheKey(k)).toBe('m@1@0@-ff@half');
  });

  it('reads layer ids and tags in order', () => {
    const layer = parseCacheKey('m@2@1@abc@float@12');
    expect(layer.layerId).toBe(12n);
    expect(formatCacheKey(layer)).toBe('m@2@1@abc@float@12');
    const tagged = parseCacheKey('m@1@0@abc@bfloat16@user%alice@lora%a%b');
    expect(tagged.tags).toEqual([
      ['user', 'alice'],
      ['lora', 'a%b'],
    ]);
    expect(formatCacheKey(tagged)).toBe('m@1@0@abc@bfloat16@user%alice@lora%a%b');
    const both = parseCacheKey('m@1@0@abc@bfloat16@3@t%v');
    expect([both.layerId, both.tags]).toEqual([3n, [['t', 'v']]]);
  });

  it('reads the older formats LMCache wrote', () => {
    const legacy = parseCacheKey('vllm@meta-llama/Llama-3.1-8B@1@0@7f3a@bfloat16@user%bob');
    expect(legacy).toMatchObject({ format: 'legacy', fmt: 'vllm', chunkHash: 0x7f3an, dtype: 'bfloat16' });
    expect(formatCacheKey(legacy)).toBe('vllm@meta-llama/Llama-3.1-8B@1@0@7f3a@bfloat16@user%bob');
    const v0 = parseCacheKey('huggingface@gpt2@4@3@00ab');
    expect(v0).toMatchObject({ format: 'legacy-v0', fmt: 'huggingface', worldSize: 4n, workerId: 3n });
    expect(formatCacheKey(v0)).toBe('huggingface@gpt2@4@3@ab');
  });

  it('refuses what LMCache refuses, naming the field', () => {
    const bad = (s: string, re: RegExp) => {
      try {
        parseCacheKey(s);
      } catch (err) {
        expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
        expect((err as Error).message).toMatch(re);
        return;
      }
      throw new Error(`accepted ${s}`);
    };
    bad('m@1@0@abc', /at least 5/);
    bad('m@1@0@xyz@bfloat16', /chunk hash "xyz"/);
    bad('m@1@0@abc@float16', /unknown dtype "float16"/);
    bad('m@0x1@0@abc@half', /world_size "0x1"/);
    bad('m@1@0@abc@half@notag', /tag "notag"/);
  });

  it('builds keys and refuses fields that would not round-trip', () => {
    const k = cacheKey({ modelName: 'm/x', worldSize: 1, workerId: 0, chunkHash: -5n, dtype: 'half' });
    expect(formatCacheKey(k)).toBe('m/x@1@0@-5@half');
    expect(() =>
      cacheKey({ modelName: 'a@b', worldSize: 1, workerId: 0, chunkHash: 1, dtype: 'half' }),
    ).toThrow(/contains '@'/);
  });
});
