import { describe, expect, it } from 'vitest';
import {
  decodeGdsHeader,
  encodeGdsHeader,
  GDS_HEADER_SIZE,
  gdsDataPath,
  gdsKeyOfFileName,
  gdsTensorFor,
  parseCacheKey,
  pyJsonDumps,
  pyQuote,
  pyUnquote,
} from './index.js';

describe('Python helpers', () => {
  it('quotes like urllib.parse.quote(safe="") and unquotes back', () => {
    expect(pyQuote("a/b c@d!'()*~_.-%")).toBe('a%2Fb%20c%40d%21%27%28%29%2A~_.-%25');
    expect(pyQuote('é')).toBe('%C3%A9');
    expect(pyUnquote('a%2Fb%40c')).toBe('a/b@c');
    expect(pyUnquote('100%zz')).toBe('100%zz');
  });
  it('dumps JSON like json.dumps', () => {
    expect(pyJsonDumps({ a: [1, 2], b: 'é"\n', c: {} })).toBe('{"a": [1, 2], "b": "\\u00e9\\"\\n", "c": {}}');
  });
});

describe('GDS layout', () => {
  const key = parseCacheKey('meta-llama/Llama-3.1-8B@1@0@7f3a9c21e0b44d12@bfloat16');
  it('names directories by the decimal chunk hash', () => {
    expect(gdsDataPath('/c', key)).toBe(
      '/c/91/67/meta-llama%2FLlama-3.1-8B%401%400%407f3a9c21e0b44d12%40bfloat16.kvcache.safetensors',
    );
    expect(gdsDataPath('/c', 'm@1@0@-1c2d@half')).toMatch(/^\/c\/-7\/21\//);
    // str(7) is "7": os.path.join skips the empty second level.
    expect(gdsDataPath('/c', 'm@1@0@7@half')).toBe('/c/7/m%401%400%407%40half.kvcache.safetensors');
    expect(gdsKeyOfFileName('m%401%400%407%40half.kvcache.safetensors')?.chunkHash).toBe(7n);
    expect(gdsKeyOfFileName('m%401%400%407%40half.kvcache.safetensors.metadata')).toBeUndefined();
  });

  it('encodes the header byte for byte and decodes it back', () => {
    const h = encodeGdsHeader({ dtype: 'BF16', shape: [2, 32, 256, 1024], fmt: 1 });
    expect(h.byteLength).toBe(GDS_HEADER_SIZE);
    const b = Buffer.from(h);
    expect(b.readBigUInt64LE(0)).toBe(4088n);
    const json =
      '{"kvcache": {"dtype": "BF16", "shape": [2, 32, 256, 1024], "data_offsets": [0, 33554432], "fmt": 1, "__metadata__": {"lmcache_version": "1"}}}';
    expect(b.subarray(8, 8 + json.length).toString()).toBe(json);
    expect(b.subarray(8 + json.length).every((c) => c === 0x20)).toBe(true);
    expect(decodeGdsHeader(h)).toMatchObject({
      dtype: 'BF16',
      shape: [2, 32, 256, 1024],
      fmt: 1,
      dataOffsets: [0, 33554432],
      metadata: { lmcache_version: '1' },
    });
    const multi = encodeGdsHeader({
      dtype: 'BF16',
      shape: [1],
      fmt: 7,
      shapes: [[2, 3], [4]],
      dtypes: ['BF16', 'F8E4M3FN'],
    });
    expect(decodeGdsHeader(multi)).toMatchObject({
      dataOffsets: [0, 16],
      shapes: [[2, 3], [4]],
      dtypes: ['BF16', 'F8E4M3FN'],
    });
  });

  it('refuses what LMCache cannot read', () => {
    expect(() => encodeGdsHeader({ dtype: 'Q4' as 'U8', shape: [1], fmt: 1 })).toThrow(/unknown dtype/);
    expect(() => encodeGdsHeader({ dtype: 'U8', shape: [1], fmt: 9 })).toThrow(/MemoryFormat/);
    expect(() => encodeGdsHeader({ dtype: 'U8', shape: new Array(2000).fill(1), fmt: 1 })).toThrow(
      /exceeds 4088/,
    );
    expect(decodeGdsHeader(new Uint8Array(4096))).toBeUndefined();
    const other = Buffer.from(encodeGdsHeader({ dtype: 'U8', shape: [1], fmt: 1 }));
    other.write('"2"', other.indexOf('"1"}}'));
    expect(decodeGdsHeader(other)?.unloadable).toMatch(/lmcache_version/);
  });

  it('describes partial chunks the way LMCache stores them', () => {
    expect(gdsTensorFor('BF16', 2 * 32 * 100 * 1024 * 2, { kvShape: [2, 32, 256, 1024] }).shape).toEqual([
      2, 32, 100, 1024,
    ]);
    // No chunk shape to fit: plain bytes, never a 1-D tensor passed off as KV data.
    expect(gdsTensorFor('BF16', 10)).toEqual({ dtype: 'U8', shape: [10], fmt: 4 });
    expect(gdsTensorFor('F32', 10)).toEqual({ dtype: 'U8', shape: [10], fmt: 4 });
  });
});
