import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTierError } from '@tierkit/tier-core';
import { buildSync } from 'esbuild';
import { describe, expect, it } from 'vitest';
import { chunkHashes } from './hash.js';

function tokens(n: number, seed: number): number[] {
  let x = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % 152_064; // a Qwen-sized vocabulary
  });
}

/** The documented algorithm, written out longhand. */
function reference(ids: number[], size: number): string[] {
  const out: string[] = [];
  let prev = Buffer.alloc(32);
  for (let start = 0; start < ids.length; start += size) {
    const part = ids.slice(start, start + size);
    const bytes = Buffer.alloc(part.length * 4);
    part.forEach((t, i) => {
      bytes.writeUInt32LE(t, i * 4);
    });
    prev = createHash('sha256')
      .update(Buffer.concat([prev, bytes]))
      .digest();
    out.push(prev.toString('hex'));
  }
  return out;
}

describe('chunkHashes', () => {
  it('follows the documented algorithm (sha256 chain over little-endian u32 token ids)', () => {
    const ids = tokens(1000, 7);
    const got = chunkHashes(ids);
    expect(got.map((c) => c.hash)).toEqual(reference(ids, 256));
    expect(got.map((c) => [c.index, c.start, c.end])).toEqual([
      [0, 0, 256],
      [1, 256, 512],
      [2, 512, 768],
      [3, 768, 1000],
    ]);
    // A fixed vector, so a change of algorithm cannot pass unnoticed.
    expect(chunkHashes([1, 2, 3], { chunkSize: 2 }).map((c) => c.hash)).toEqual(reference([1, 2, 3], 2));
    expect(chunkHashes([0], { chunkSize: 1 })[0]!.hash).toBe(
      createHash('sha256').update(Buffer.alloc(36)).digest('hex'),
    );
  });

  it('names prefixes: shared leading chunks share hashes, the first differing chunk and all after differ', () => {
    const a = tokens(1024, 1);
    const b = [...a.slice(0, 600), ...tokens(424, 2)];
    const ha = chunkHashes(a).map((c) => c.hash);
    const hb = chunkHashes(b).map((c) => c.hash);
    expect(hb.slice(0, 2)).toEqual(ha.slice(0, 2));
    expect(hb[2]).not.toBe(ha[2]);
    expect(hb[3]).not.toBe(ha[3]);
    // Same tokens in a later chunk after a different prefix: a different hash.
    const c = [...tokens(256, 9), ...a.slice(256, 512)];
    expect(chunkHashes(c)[1]!.hash).not.toBe(ha[1]);
  });

  it('gives the same hashes for number[], Uint32Array and Int32Array input', () => {
    const ids = tokens(700, 3);
    const want = chunkHashes(ids, { chunkSize: 128 });
    expect(chunkHashes(Uint32Array.from(ids), { chunkSize: 128 })).toEqual(want);
    expect(chunkHashes(Int32Array.from(ids), { chunkSize: 128 })).toEqual(want);
    const sub = Uint32Array.from([0, ...ids]).subarray(1);
    expect(chunkHashes(sub, { chunkSize: 128 })).toEqual(want);
  });

  it('drops the trailing short chunk when partial is false', () => {
    expect(chunkHashes(tokens(600, 4), { partial: false })).toHaveLength(2);
    expect(chunkHashes(tokens(512, 4), { partial: false })).toHaveLength(2);
    expect(chunkHashes([], {})).toEqual([]);
  });

  it('refuses bad token ids and chunk sizes with INVALID_ARGUMENT', () => {
    for (const bad of [[-1], [1.5], [2 ** 32], [Number.NaN]]) {
      expect(() => chunkHashes(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    }
    for (const size of [0, -1, 1.5]) {
      try {
        chunkHashes([1], { chunkSize: size });
        expect.unreachable();
      } catch (e) {
        expect(isTierError(e, 'INVALID_ARGUMENT')).toBe(true);
      }
    }
  });

  it('is the same in another process', () => {
    // Bundle this package's hash module as it ships and run it in a fresh Node.
    const dir = mkdtempSync(join(tmpdir(), 'tierkit-kv-hash-'));
    try {
      const entry = fileURLToPath(new URL('./hash.ts', import.meta.url));
      const bundle = join(dir, 'hash.mjs');
      buildSync({ entryPoints: [entry], bundle: true, platform: 'node', format: 'esm', outfile: bundle });
      const ids = tokens(5000, 11);
      const input = join(dir, 'tokens.json');
      writeFileSync(input, JSON.stringify(ids));
      const script = `import { chunkHashes } from ${JSON.stringify(bundle)};
import { readFileSync } from 'node:fs';
const ids = Uint32Array.from(JSON.parse(readFileSync(${JSON.stringify(input)}, 'utf8')));
process.stdout.write(JSON.stringify(chunkHashes(ids, { chunkSize: 100 }).map((c) => c.hash)));`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, TZ: 'Asia/Tokyo', LANG: 'C' },
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const child = JSON.parse(r.stdout) as string[];
      expect(child).toHaveLength(50);
      expect(child).toEqual(chunkHashes(ids, { chunkSize: 100 }).map((c) => c.hash));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
