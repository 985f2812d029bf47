// The formats against the Python reference written from LMCache's source
// (test-fixtures/lmcache_ref.py) and the golden directories it made.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decodeGdsHeader,
  decodeRemoteMetadata,
  encodeGdsHeader,
  encodeRemoteMetadata,
  fsDataPath,
  GDS_HEADER_SIZE,
  gdsDataPath,
  parseCacheKey,
  REMOTE_METADATA_SIZE,
  type TensorDtype,
} from './index.js';
import { goldenDir, goldenManifest, pythonMissing, runReference } from './testing.js';

const golden = goldenDir();
const manifest = goldenManifest();
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const scratch = mkdtempSync(join(tmpdir(), 'tierkit-lmcache-ref-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => statSync(join(dir, f)).isFile())
    .sort();
}

describe('golden LMCache directories (checked in)', () => {
  it('every GDS entry is where the layout says, with the header tierkit would write', () => {
    expect(manifest.gds.length).toBeGreaterThanOrEqual(8);
    for (const e of manifest.gds) {
      const key = parseCacheKey(e.key);
      expect(relative(golden, gdsDataPath(join(golden, 'gds'), key))).toBe(e.path);
      const file = readFileSync(join(golden, e.path));
      const header = file.subarray(0, GDS_HEADER_SIZE);
      expect(decodeGdsHeader(header)).toMatchObject({ dtype: e.dtype, shape: e.shape, fmt: e.fmt });
      expect(
        Buffer.from(encodeGdsHeader({ dtype: e.dtype as TensorDtype, shape: e.shape, fmt: e.fmt })).equals(
          header,
        ),
      ).toBe(true);
      expect(readFileSync(join(golden, `${e.path}.metadata`)).equals(header)).toBe(true);
      expect(sha(file.subarray(GDS_HEADER_SIZE))).toBe(e.sha256);
    }
  });

  it('every FS-connector entry, with and without RemoteMetadata', () => {
    for (const [set, meta] of [
      ['fs_meta', true],
      ['fs_nometa', false],
    ] as const) {
      const bases = [join(golden, set, 'a'), join(golden, set, 'b')];
      for (const e of manifest[set]) {
        expect(relative(golden, fsDataPath(bases, e.key))).toBe(e.path);
        const file = readFileSync(join(golden, e.path));
        if (meta) {
          const m = decodeRemoteMetadata(file);
          expect(m).toEqual({ length: e.nbytes, fmt: e.fmt, dtype: e.dtype, shape: e.shape });
          expect(Buffer.from(encodeRemoteMetadata(m!)).equals(file.subarray(0, 28))).toBe(true);
        }
        expect(sha(file.subarray(meta ? REMOTE_METADATA_SIZE : 0))).toBe(e.sha256);
      }
    }
  });
});

describe.skipIf(!!pythonMissing)(`the Python reference${pythonMissing ? ` (${pythonMissing})` : ''}`, () => {
  it('regenerates the golden directories byte for byte', () => {
    const out = join(scratch, 'golden');
    runReference(['golden', out]);
    const want = files(golden);
    expect(files(out)).toEqual(want);
    for (const f of want) {
      // manifest.json is kept in the repository's JSON format: compared as JSON.
      if (f === 'manifest.json') {
        expect(JSON.parse(readFileSync(join(out, f), 'utf8'))).toEqual(manifest);
        continue;
      }
      expect(readFileSync(join(out, f)).equals(readFileSync(join(golden, f))), f).toBe(true);
    }
  });

  it('reads GDS headers tierkit encodes, for bf16, fp16, fp8 and fp32 chunks', () => {
    const cases: [string, TensorDtype, number[], number][] = [
      ['m/a@1@0@1f00aa00bb00cc00@bfloat16', 'BF16', [2, 4, 16, 8], 1],
      ['m/a@1@0@-2f00aa00bb00cc00@half', 'F16', [2, 4, 16, 8], 1],
      ['m/a@1@0@3f00aa00bb00cc00@fp8_e4m3fn', 'F8E4M3FN', [2, 4, 16, 8], 1],
      ['m/a@1@0@4f00aa00bb00cc00@float', 'F32', [1, 4, 16, 8], 6],
    ];
    const root = join(scratch, 'gds');
    for (const [k, dtype, shape, fmt] of cases) {
      const header = encodeGdsHeader({ dtype, shape, fmt });
      const data = Buffer.alloc(decodeGdsHeader(header)!.dataOffsets[1], k.length);
      const path = gdsDataPath(root, k);
      mkdirSync(join(path, '..'), { recursive: true });
      writeFileSync(path, Buffer.concat([header, data]));
      writeFileSync(`${path}.metadata`, header);
      expect(runReference(['gds-read', '--root', root, '--key', k])).toMatchObject({
        dtype,
        shape,
        fmt,
        nbytes: data.byteLength,
        sha256: sha(data),
      });
    }
    expect((runReference(['gds-scan', '--root', root]) as string[]).sort()).toEqual(
      cases.map((c) => c[0]).sort(),
    );
  });
});
