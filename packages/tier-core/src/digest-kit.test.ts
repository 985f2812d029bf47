/**
 * The digest algorithms against published check values and node's own
 * hashes, whole and per part, in this thread and on the digest worker.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { digestKit } from './digest-kit.js';
import { DigestSession } from './digest-worker.js';

const kit = digestKit(createRequire(import.meta.url));
const check = new TextEncoder().encode('123456789');

/** A plain bit-at-a-time CRC32C, the definition the table-driven one must agree with. */
function crc32cBitwise(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

function crc64Bitwise(b: Uint8Array): bigint {
  const poly = 0x9a6c9329ac4bc9b5n;
  const mask = (1n << 64n) - 1n;
  let c = mask;
  for (const x of b) {
    c ^= BigInt(x);
    for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ poly : c >> 1n;
  }
  return ~c & mask;
}

describe('digest kit', () => {
  it('check values: CRC32C, CRC64NVME, CRC32 of "123456789"', () => {
    expect(kit.crc32c(check)).toBe(0xe3069283);
    expect(kit.crc64nvme(check)).toBe(0xae8b14860a799888n);
    expect(kit.crc32(check)).toBe(0xcbf43926);
    expect(kit.create({ algorithm: 'crc64nvme' }).finish()).toBe('0000000000000000');
  });

  it('table-driven CRCs agree with the bitwise definition at every length and alignment', () => {
    const data = randomBytes(300);
    for (let start = 0; start < 9; start++) {
      for (const len of [0, 1, 7, 8, 9, 15, 16, 17, 63, 200]) {
        const b = data.subarray(start, start + len);
        expect(kit.crc32c(b)).toBe(crc32cBitwise(b));
        expect(kit.crc64nvme(b)).toBe(crc64Bitwise(b));
      }
    }
  });

  it('streamed in uneven pieces equals one-shot, for every algorithm', () => {
    const data = randomBytes(100_003);
    for (const algorithm of ['md5', 'sha1', 'sha256', 'crc32', 'crc32c', 'crc64nvme'] as const) {
      const whole = kit.create({ algorithm });
      whole.update(data);
      const pieces = kit.create({ algorithm });
      for (let i = 0; i < data.length; i += 9_999) pieces.update(data.subarray(i, i + 9_999));
      expect(pieces.finish()).toBe(whole.finish());
    }
    const md5 = kit.create({ algorithm: 'md5' });
    md5.update(data);
    expect(md5.finish()).toBe(createHash('md5').update(data).digest('hex'));
  });

  it('per part: the digest of the part digests (an S3 multipart ETag)', () => {
    const data = randomBytes(25_000);
    const partSize = 10_000;
    const parts = [0, 1, 2].map((i) =>
      createHash('md5')
        .update(data.subarray(i * partSize, (i + 1) * partSize))
        .digest(),
    );
    const want = createHash('md5').update(Buffer.concat(parts)).digest('hex');
    const s = kit.create({ algorithm: 'md5', partSize });
    for (let i = 0; i < data.length; i += 3_333) s.update(data.subarray(i, i + 3_333));
    expect(s.finish()).toBe(want);
    // A COMPOSITE CRC: the CRC of the parts' big-endian CRCs.
    const crcs = Buffer.alloc(12);
    for (let i = 0; i < 3; i++)
      crcs.writeUInt32BE(kit.crc32c(data.subarray(i * partSize, (i + 1) * partSize)), i * 4);
    const c = kit.create({ algorithm: 'crc32c', partSize });
    c.update(data);
    expect(c.finish()).toBe(kit.crc32c(crcs).toString(16).padStart(8, '0'));
  });
});

describe('digest worker', () => {
  const open: DigestSession[] = [];
  afterAll(() => {
    for (const s of open) s.drop();
  });

  it('digests in order on a worker thread, the same as this thread', async () => {
    const data = randomBytes(3_000_001);
    const s = new DigestSession([
      { algorithm: 'sha256' },
      { algorithm: 'crc64nvme' },
      { algorithm: 'md5', partSize: 1 << 20 },
    ]);
    open.push(s);
    for (let i = 0; i < data.length; i += 1 << 19) s.update(data.subarray(i, i + (1 << 19)));
    const values = await s.finish();
    const local = s.specs.map((spec) => {
      const st = kit.create(spec);
      st.update(data);
      return st.finish();
    });
    expect(values).toEqual(local);
    expect(values[0]).toBe(createHash('sha256').update(data).digest('hex'));
    expect(s.backlog).toBe(0);
  });

  it('many sessions at once keep their states apart', async () => {
    const datas = [1, 2, 3, 4, 5].map((n) => randomBytes(n * 10_000));
    const ss = datas.map(() => new DigestSession([{ algorithm: 'sha1' }]));
    open.push(...ss);
    for (let i = 0; i < 50_000; i += 7_000) {
      for (const [j, s] of ss.entries()) s.update(datas[j]!.subarray(i, i + 7_000));
    }
    const got = await Promise.all(ss.map((s) => s.finish()));
    expect(got.map((v) => v[0])).toEqual(datas.map((d) => createHash('sha1').update(d).digest('hex')));
  });
});

describe('inline digest sessions (small objects)', () => {
  it('give the same digests on the calling thread', async () => {
    const data = randomBytes(100_000);
    const here = new DigestSession([{ algorithm: 'md5' }, { algorithm: 'crc64nvme', partSize: 30_000 }], {
      inline: true,
    });
    here.update(data.subarray(0, 50_000));
    here.update(data.subarray(50_000));
    const there = new DigestSession(here.specs);
    there.update(data);
    expect(await here.finish()).toEqual(await there.finish());
  });
});

describe('the digest worker under the flags users run node with', () => {
  it.each([['--expose-gc'], ['--input-type=module']])(
    'node %s: digests on the worker, and the process exits',
    async (flag) => {
      // The built package, as an application loads it (the CLI and bench run with such flags).
      const dist = new URL('../dist/index.js', import.meta.url).pathname;
      const code =
        `import('${dist}').then(async ({ digestBytes }) => {` +
        `console.log(await digestBytes(new Uint8Array(1 << 20), { algorithm: 'md5' }));})`;
      const { execFile } = await import('node:child_process');
      const out = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, [flag, '-e', code], { timeout: 20_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        ),
      );
      expect(out.trim()).toBe(
        createHash('md5')
          .update(new Uint8Array(1 << 20))
          .digest('hex'),
      );
    },
  );
});

describe('a digest session left unfinished', () => {
  it('keeps no process alive (a range read starts a fill whose digest never completes)', async () => {
    const dist = new URL('../dist/index.js', import.meta.url).pathname;
    // Opened and fed on a thread, never finished nor dropped: the process must still exit by itself.
    const code =
      `import('${dist}').then(async ({ DigestSession }) => {` +
      `const s = new DigestSession([{ algorithm: 'md5' }]); s.update(new Uint8Array(1 << 20));` +
      `await new Promise((r) => setTimeout(r, 200)); console.log('fed', s.backlog);})`;
    const { execFile } = await import('node:child_process');
    const result = await new Promise<{ code: number | null; killed: boolean; out: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        ['--input-type=module', '-e', code],
        { timeout: 20_000 },
        (err, stdout) => resolve({ code: child.exitCode, killed: Boolean(err && child.killed), out: stdout }),
      );
    });
    expect(result.killed).toBe(false);
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/^fed \d+/);
  });
});
