import { describe, expect, it } from 'vitest';
import {
  decodeRemoteMetadata,
  encodeRemoteMetadata,
  fsBasePathIndex,
  fsDataPath,
  fsFileName,
  fsKeyOfFileName,
  fsTempPath,
  parseCacheKey,
} from './index.js';

describe('FS connector layout', () => {
  it('names files with -SEP- and picks the base path by abs(chunk_hash) % n', () => {
    const key = parseCacheKey('meta-llama/Llama-3.1-8B@1@0@-7@bfloat16');
    expect(fsFileName(key)).toBe('meta-llama-SEP-Llama-3.1-8B@1@0@-7@bfloat16.data');
    expect(fsBasePathIndex(key, 3)).toBe(1);
    expect(fsBasePathIndex(key, 1)).toBe(0);
    expect(fsDataPath(['/a', '/b'], key)).toBe('/b/meta-llama-SEP-Llama-3.1-8B@1@0@-7@bfloat16.data');
    expect(fsTempPath('/b/m@1@0@7@half.data')).toBe('/b/m@1@0@7@half.tmp');
    expect(fsTempPath('/b/m@1@0@7@half.data', 'tmp')).toBe('/b/tmp/m@1@0@7@half.data');
    expect(fsKeyOfFileName('meta-llama-SEP-Llama-3.1-8B@1@0@-7@bfloat16.data')?.modelName).toBe(
      'meta-llama/Llama-3.1-8B',
    );
    expect(fsKeyOfFileName('x.tmp')).toBeUndefined();
  });

  it('writes RemoteMetadata as struct "iiiiiii" and reads it back', () => {
    const m = encodeRemoteMetadata({ length: 65536, fmt: 1, dtype: 'BF16', shape: [2, 2, 16, 8] });
    expect(m.byteLength).toBe(28);
    expect([...new Int32Array(m.buffer.slice(m.byteOffset, m.byteOffset + 28))]).toEqual([
      65536, 1, 3, 2, 2, 16, 8,
    ]);
    expect(decodeRemoteMetadata(m)).toEqual({ length: 65536, fmt: 1, dtype: 'BF16', shape: [2, 2, 16, 8] });
    // F16 is written as 2; code 1 (torch.half) reads as F16 too.
    expect(
      new Int32Array(
        encodeRemoteMetadata({ length: 2, fmt: 1, dtype: 'F16', shape: [1, 1, 1, 1] }).slice().buffer,
      )[2],
    ).toBe(2);
    const one = Buffer.from(m);
    one.writeInt32LE(1, 8);
    expect(decodeRemoteMetadata(one)?.dtype).toBe('F16');
    one.writeInt32LE(99, 8);
    expect(decodeRemoteMetadata(one)).toBeUndefined();
  });

  it('refuses what struct.pack and LMCache refuse', () => {
    expect(() => encodeRemoteMetadata({ length: 2 ** 31, fmt: 1, dtype: 'U8', shape: [1, 0, 0, 0] })).toThrow(
      /32-bit/,
    );
    expect(() => encodeRemoteMetadata({ length: 1, fmt: 1, dtype: 'I32', shape: [1, 0, 0, 0] })).toThrow(
      /no code/,
    );
    expect(() => encodeRemoteMetadata({ length: 1, fmt: 1, dtype: 'U8', shape: [1, 0, 0] as never })).toThrow(
      /4 dimensions/,
    );
  });
});
