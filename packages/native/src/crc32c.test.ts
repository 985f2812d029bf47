import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Crc32c, crc32c, jsCrc32c, nativeCrc32c, portableCrc32c } from './index.js';
import { packageDir } from './test-utils.js';

/** CRC32C one bit at a time, straight from the definition: the reference the fast versions are held to. */
function reference(bytes: Uint8Array): number {
  let r = 0xffffffff;
  for (const b of bytes) {
    r ^= b;
    for (let i = 0; i < 8; i++) r = r & 1 ? (r >>> 1) ^ 0x82f63b78 : r >>> 1;
  }
  return ~r >>> 0;
}

/** The reference continued from a finished CRC `crc`, as the implementations' second argument does. */
function referenceFrom(crc: number, bytes: Uint8Array): number {
  let r = ~crc >>> 0;
  for (const b of bytes) {
    r ^= b;
    for (let i = 0; i < 8; i++) r = r & 1 ? (r >>> 1) ^ 0x82f63b78 : r >>> 1;
  }
  return ~r >>> 0;
}

const CHECK = new TextEncoder().encode('123456789');

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tierkit-native-crc-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const native = nativeCrc32c();
const portable = portableCrc32c();
const backends: [string, Crc32c | undefined][] = [
  ['native', native],
  ['js', jsCrc32c],
];

describe('CRC32C', () => {
  it('the addon has it, with the CPU instructions on x64 and arm64', () => {
    expect(native).toBeDefined();
    if (process.arch === 'x64' || process.arch === 'arm64') {
      // Every x86-64 server since 2008 has SSE4.2; every ARMv8.1 core has CRC.
      expect(native!.name).toMatch(process.arch === 'x64' ? /^sse4\.2(\+pclmul)?$/ : /^armv8-crc$/);
    }
    expect(crc32c().name).toBe(native!.name);
  });

  for (const [name, impl] of backends) {
    describe(name, () => {
      it('gives the standard check value of "123456789"', () => {
        expect(impl!.crc32c(CHECK)).toBe(0xe3069283);
        expect(impl!.crc32c(new Uint8Array(0))).toBe(0);
      });

      it('matches the bitwise reference at every length and alignment around its strides', () => {
        const data = randomBytes(3 * 4096 * 2 + 64);
        const lengths = [1, 7, 8, 9, 63, 4095, 4096, 4097, 12287, 12288, 12289, 24576, 24577, 3 * 4096 * 2];
        for (const len of lengths) {
          for (const off of [0, 1, 3, 7, 13]) {
            const view = data.subarray(off, off + len);
            expect(impl!.crc32c(view), `len ${len} off ${off}`).toBe(reference(view));
          }
        }
      });

      it('matches the reference at every length up to 1100 bytes, from any register and alignment', () => {
        const data = randomBytes(1200);
        for (let len = 0; len <= 1100; len++) {
          const off = len % 17;
          const crc = (len * 2654435761) >>> 0;
          const view = data.subarray(off, off + len);
          // Continuing `crc` over `view` is the reference CRC of the bytes it was made of, then `view`:
          // checked here against the bitwise definition with a register preloaded.
          expect(impl!.crc32c(view, crc), `len ${len}`).toBe(referenceFrom(crc, view));
        }
      });

      it('continues a CRC across pieces and reads any ArrayBufferView', async () => {
        const data = randomBytes(50_000);
        const whole = reference(data);
        for (const cut of [0, 1, 4096, 12_288, 33_333, 50_000]) {
          expect(impl!.crc32c(data.subarray(cut), impl!.crc32c(data.subarray(0, cut)))).toBe(whole);
        }
        const words = new Uint32Array(data.buffer, data.byteOffset, 12_500);
        expect(impl!.crc32c(words)).toBe(whole);
        expect(impl!.crc32c(new DataView(data.buffer, data.byteOffset, data.byteLength))).toBe(whole);
        // Views of shared memory (what pooled reads fill) too.
        const shared = new Uint8Array(new SharedArrayBuffer(data.length + 3)).subarray(3);
        shared.set(data);
        expect(impl!.crc32c(shared)).toBe(whole);
        expect([...(await impl!.blocksAsync(shared, 4096))]).toEqual([...impl!.blocks(data, 4096)]);
      });

      it('checksums blocks of a buffer and of a file, the last block short', async () => {
        const data = randomBytes(5 * 1000 + 123);
        const want = [0, 1, 2, 3, 4, 5].map((b) => reference(data.subarray(b * 1000, (b + 1) * 1000)));
        expect([...impl!.blocks(data, 1000)]).toEqual(want);
        expect([...(await impl!.blocksAsync(data, 1000))]).toEqual(want);
        const path = join(dir, `${name}.bin`);
        writeFileSync(path, Buffer.concat([randomBytes(77), data]));
        const fd = openSync(path, 'r');
        try {
          expect([...(await impl!.file(fd, 77, data.length, 1000))]).toEqual(want);
          // Block sizes larger than the read pieces, and a file shorter than the range.
          const big = randomBytes(9 * 1024 * 1024 + 5);
          writeFileSync(path, big);
          expect([...(await impl!.file(fd, 0, big.length, 5 * 1024 * 1024))]).toEqual([
            reference(big.subarray(0, 5 * 1024 * 1024)),
            reference(big.subarray(5 * 1024 * 1024)),
          ]);
          await expect(impl!.file(fd, 0, big.length + 1, 4096)).rejects.toThrow(/ended before/);
          // Read and checksummed together, into shared memory too.
          const into = new Uint8Array(new SharedArrayBuffer(big.length - 1000)).subarray(
            0,
            3 * 1024 * 1024 + 7,
          );
          const sums = await impl!.read(fd, into, 1000, 1024 * 1024);
          expect(Buffer.from(into).equals(big.subarray(1000, 1000 + into.length))).toBe(true);
          expect([...sums]).toEqual(
            [0, 1, 2, 3].map((b) => reference(into.subarray(b * 1024 * 1024, (b + 1) * 1024 * 1024))),
          );
          await expect(impl!.read(fd, new Uint8Array(10), big.length - 5, 4)).rejects.toThrow(/ended before/);
        } finally {
          closeSync(fd);
        }
        expect(() => impl!.blocks(data, 0)).toThrow(RangeError);
      });
    });
  }

  it("the addon's table version agrees with its hardware version", () => {
    expect(portable).toBeDefined();
    const data = randomBytes(100_003);
    expect(portable!(CHECK)).toBe(0xe3069283);
    expect(portable!(data)).toBe(native!.crc32c(data));
    expect(portable!(data.subarray(5))).toBe(reference(data.subarray(5)));
  });

  it('TIERKIT_CRC32C picks the table version in the addon, or JavaScript, for the process', () => {
    const script =
      "import('./dist/index.js').then((n) => { const c = n.crc32c(); " +
      "console.log(c.name + ' ' + c.crc32c(Buffer.from('123456789')).toString(16)); })";
    const run = (value: string) =>
      spawnSync(process.execPath, ['-e', script], {
        cwd: packageDir,
        encoding: 'utf8',
        env: { ...process.env, TIERKIT_CRC32C: value },
      });
    const table = run('portable');
    expect(table.stderr).toBe('');
    expect(table.stdout.trim()).toBe('table e3069283');
    expect(run('js').stdout.trim()).toBe('js e3069283');
  });

  it.skipIf(process.arch !== 'x64')(
    'the crc32 instruction alone (no carry-less folding) agrees, at every size',
    () => {
      // Lengths across the three-stream stripes (12 KiB) and the folding loop (64 bytes).
      const script =
        "import('./dist/index.js').then((n) => { const c = n.crc32c(); const b = Buffer.alloc(70000);" +
        ' for (let i = 0; i < b.length; i++) b[i] = (i * 131 + 7) & 255;' +
        ' const out = [c.name]; for (const len of [0, 5, 255, 256, 257, 4096, 12287, 12288, 12289, 40000, 70000])' +
        " out.push(c.crc32c(b.subarray(0, len), len)); console.log(out.join(' ')); })";
      const run = (value: string) =>
        spawnSync(process.execPath, ['-e', script], {
          cwd: packageDir,
          encoding: 'utf8',
          env: { ...process.env, TIERKIT_CRC32C: value },
        }).stdout.trim();
      const plain = run('sse4.2').split(' ');
      const js = run('js').split(' ');
      expect(plain[0]).toBe('sse4.2');
      expect(plain.slice(1)).toEqual(js.slice(1));
      expect(run('').split(' ').slice(1)).toEqual(js.slice(1));
    },
  );
});
