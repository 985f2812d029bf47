/**
 * The conformance suite every tier, layer and stack runs. It takes the test
 * framework as an argument (tier-core has no dependency on it) and chooses its
 * cases from the tier's declared capabilities.
 *
 *   import * as vitest from 'vitest';
 *   runTierConformance(vitest, { name: 'fs', create: async () => ({ tier, cleanup }) });
 */
import { isTierError, type TierErrorCode } from '../errors.js';
import type { Tier } from '../tier.js';

/** The parts of vitest (or a compatible runner) the suite uses. */
export interface TestApi {
  describe: (name: string, fn: () => void) => void;
  it: (name: string, fn: () => Promise<void> | void, timeout?: number) => void;
  expect: (value: unknown, message?: string) => any;
  beforeAll: (fn: () => Promise<void> | void, timeout?: number) => void;
  afterAll: (fn: () => Promise<void> | void, timeout?: number) => void;
}

export interface ConformanceSubject {
  readonly tier: Tier;
  /** Removes whatever `create` made (directories, servers). */
  readonly cleanup?: () => Promise<void> | void;
}

export interface ConformanceOptions {
  readonly name: string;
  /** Builds a fresh, empty tier. Called once for the suite and once for the close case. */
  readonly create: () => Promise<ConformanceSubject> | ConformanceSubject;
  /** For tiers without `write`: puts an object in place by other means. */
  readonly seed?: (tier: Tier, key: string, bytes: Uint8Array) => Promise<void>;
  /** Size of the large round trip (default 4 MiB + 3 bytes). */
  readonly largeSize?: number;
  /** Per-test timeout in ms (default 30 s). */
  readonly timeout?: number;
}

/** Deterministic bytes that differ per (seed, position), so misplaced bytes show. */
export function patternBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Keys that every tier must refuse with INVALID_KEY. */
export const HOSTILE_KEYS: readonly string[] = [
  '',
  '.',
  '..',
  '../escape',
  'a/../../escape',
  'a/./b',
  'a//b',
  '/absolute',
  'trailing/',
  'back\\slash',
  '..\\windows',
  'nul\u0000byte',
  'new\nline',
  'del\u007f',
  'a/..',
  `${'x'.repeat(256)}`,
  `${'seg/'.repeat(300)}end`,
];

async function expectTierError(promise: Promise<unknown>, code: TierErrorCode): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  if (!isTierError(caught, code)) {
    const got = isTierError(caught) ? `TierError ${caught.code}: ${caught.message}` : String(caught);
    throw new Error(`expected a TierError with code ${code}, got ${caught === undefined ? 'success' : got}`);
  }
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of stream) {
    parts.push(c);
    n += c.byteLength;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

async function* chunked(bytes: Uint8Array, size: number): AsyncIterable<Uint8Array> {
  for (let i = 0; i < bytes.byteLength; i += size) {
    yield bytes.slice(i, Math.min(i + size, bytes.byteLength));
    await new Promise((r) => setImmediate(r));
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return (
    a !== undefined && a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0
  );
}

export function runTierConformance(t: TestApi, options: ConformanceOptions): void {
  const { describe, it, expect, beforeAll, afterAll } = t;
  const timeout = options.timeout ?? 30_000;
  const largeSize = options.largeSize ?? 4 * 1024 * 1024 + 3;
  let subject: ConformanceSubject | undefined;
  let counter = 0;
  const run = `c${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  /** A key unique to one case, so cases never see each other's objects. */
  const fresh = (name: string) => `${run}/${++counter}-${name}`;
  const tier = () => {
    if (!subject) throw new Error('conformance subject was not created');
    return subject.tier;
  };
  const put = async (key: string, bytes: Uint8Array) => {
    const tr = tier();
    if (tr.capability.write) await tr.write(key, bytes);
    else if (options.seed) await options.seed(tr, key, bytes);
    else throw new Error('tier has no write capability and no seed function');
  };

  describe(`tier conformance: ${options.name}`, () => {
    beforeAll(async () => {
      subject = await options.create();
    }, timeout);
    afterAll(async () => {
      if (!subject) return;
      await subject.tier.close();
      await subject.cleanup?.();
    }, timeout);

    const canPut = () => tier().capability.write || options.seed !== undefined;

    it('declares the v1 contract', () => {
      expect(tier().spec).toBe('tierkit/v1');
      expect(typeof tier().name).toBe('string');
      for (const flag of ['write', 'delete', 'list', 'rangeRead', 'readInto', 'etag', 'persistent']) {
        expect(typeof (tier().capability as unknown as Record<string, unknown>)[flag]).toBe('boolean');
      }
    });

    it('reports a miss as undefined', async () => {
      const key = fresh('missing');
      expect(await tier().stat(key)).toBeUndefined();
      expect(await tier().read(key)).toBeUndefined();
      expect(await tier().read(key, { range: { offset: 0, length: 1 } })).toBeUndefined();
      expect(await tier().readInto(key, new Uint8Array(8))).toBeUndefined();
      expect(await tier().readStream(key)).toBeUndefined();
    });

    it(
      'refuses hostile keys with INVALID_KEY on every operation',
      async () => {
        for (const key of HOSTILE_KEYS) {
          await expectTierError(tier().stat(key), 'INVALID_KEY');
          await expectTierError(tier().read(key), 'INVALID_KEY');
          await expectTierError(tier().readInto(key, new Uint8Array(1)), 'INVALID_KEY');
          await expectTierError(tier().readStream(key), 'INVALID_KEY');
          if (tier().capability.write)
            await expectTierError(tier().write(key, new Uint8Array(1)), 'INVALID_KEY');
          if (tier().capability.delete) await expectTierError(tier().delete(key), 'INVALID_KEY');
        }
        await expectTierError(tier().stat(42 as unknown as string), 'INVALID_KEY');
      },
      timeout,
    );

    it('rejects operations whose signal is already aborted with ABORTED', async () => {
      const signal = AbortSignal.abort(new Error('stop'));
      const key = fresh('aborted');
      await expectTierError(tier().stat(key, { signal }), 'ABORTED');
      await expectTierError(tier().read(key, { signal }), 'ABORTED');
      await expectTierError(tier().readInto(key, new Uint8Array(1), { signal }), 'ABORTED');
      if (tier().capability.write) {
        await expectTierError(tier().write(key, new Uint8Array(4), { signal }), 'ABORTED');
        expect(await tier().stat(key)).toBeUndefined();
      }
    });

    describe('round trips', () => {
      for (const [label, size] of [
        ['empty', 0],
        ['1-byte', 1],
        ['multi-MiB', largeSize],
      ] as const) {
        it(
          `${label} object: stat, read, readInto and stream agree`,
          async () => {
            if (!canPut()) return;
            const key = fresh(label);
            const bytes = patternBytes(size, size + 7);
            await put(key, bytes);
            const st = await tier().stat(key);
            expect(st?.size).toBe(size);
            expect(st?.key).toBe(key);
            expect(sameBytes(await tier().read(key), bytes)).toBe(true);
            const target = new Uint8Array(size + 16).fill(0xee);
            expect(await tier().readInto(key, target)).toBe(size);
            expect(sameBytes(target.subarray(0, size), bytes)).toBe(true);
            expect(target.subarray(size).every((b) => b === 0xee)).toBe(true);
            const stream = await tier().readStream(key);
            expect(stream).toBeDefined();
            expect(sameBytes(await collect(stream!), bytes)).toBe(true);
          },
          timeout,
        );
      }

      it(
        'writes from an async iterable byte-exact, and checks a declared size',
        async () => {
          if (!tier().capability.write) return;
          const key = fresh('streamed');
          const bytes = patternBytes(3 * 1024 * 1024 + 17, 99);
          const meta = await tier().write(key, chunked(bytes, 256 * 1024 + 5), { size: bytes.byteLength });
          expect(meta.size).toBe(bytes.byteLength);
          expect(sameBytes(await tier().read(key), bytes)).toBe(true);

          const bad = fresh('bad-size');
          await expectTierError(
            tier().write(bad, chunked(bytes.subarray(0, 1000), 100), { size: 999 }),
            'INTEGRITY',
          );
          await expectTierError(tier().write(bad, bytes.subarray(0, 10), { size: 11 }), 'INTEGRITY');
          expect(await tier().stat(bad)).toBeUndefined();
          // A failed overwrite leaves the old object intact.
          await expectTierError(
            tier().write(key, chunked(bytes.subarray(0, 50), 10), { size: 51 }),
            'INTEGRITY',
          );
          expect(sameBytes(await tier().read(key), bytes)).toBe(true);
        },
        timeout,
      );

      it('keeps its own copy: the caller may reuse its buffer after write', async () => {
        if (!tier().capability.write) return;
        const key = fresh('reuse');
        const buf = patternBytes(4096, 5);
        const copy = buf.slice();
        await tier().write(key, buf);
        buf.fill(0);
        expect(sameBytes(await tier().read(key), copy)).toBe(true);
      });

      it('overwrites: the new bytes replace the old', async () => {
        if (!tier().capability.write) return;
        const key = fresh('overwrite');
        await tier().write(key, patternBytes(5000, 1));
        const first = await tier().stat(key);
        const second = patternBytes(3000, 2);
        await tier().write(key, second);
        expect(sameBytes(await tier().read(key), second)).toBe(true);
        expect((await tier().stat(key))?.size).toBe(3000);
        if (tier().capability.etag) {
          expect(first?.etag).toBeTruthy();
          expect((await tier().stat(key))?.etag).not.toBe(first?.etag);
        }
      });

      it('honours ifMatch when it declares etag: a stale ETag is CHANGED', async () => {
        if (!tier().capability.write || !tier().capability.etag) return;
        const key = fresh('if-match');
        await tier().write(key, patternBytes(300, 1));
        const old = (await tier().stat(key))!.etag!;
        expect(sameBytes(await tier().read(key, { ifMatch: old }), patternBytes(300, 1))).toBe(true);
        const into = new Uint8Array(10);
        expect(await tier().readInto(key, into, { offset: 5, ifMatch: old })).toBe(10);
        await tier().write(key, patternBytes(300, 2));
        await expectTierError(tier().read(key, { ifMatch: old }), 'CHANGED');
        await expectTierError(
          tier().read(key, { range: { offset: 0, length: 10 }, ifMatch: old }),
          'CHANGED',
        );
        await expectTierError(tier().readInto(key, into, { offset: 5, ifMatch: old }), 'CHANGED');
      });

      it('keeps source metadata when it declares sourceMeta', async () => {
        if (!tier().capability.write || !tier().capability.sourceMeta) return;
        const key = fresh('source');
        const source = { size: 10, etag: '"abc"', lastModified: 1_700_000_000_000 };
        await tier().write(key, patternBytes(10, 3), { source });
        const st = await tier().stat(key);
        expect(st?.source?.size).toBe(10);
        expect(st?.source?.etag).toBe('"abc"');
      });
    });

    describe('ranges', () => {
      const size = 10_000;
      const bytes = patternBytes(size, 42);
      let key = '';
      beforeAll(async () => {
        if (!canPut()) return;
        key = fresh('ranged');
        await put(key, bytes);
      }, timeout);

      it('serves ranges at every edge', async () => {
        if (!canPut()) return;
        const cases: [number, number | undefined][] = [
          [0, 0],
          [size, 0],
          [size, undefined],
          [0, 1],
          [size - 1, 1],
          [size - 1, undefined],
          [0, size],
          [1234, 4321],
          [5000, undefined],
        ];
        for (const [offset, length] of cases) {
          const got = await tier().read(key, { range: { offset, length } });
          const want = bytes.subarray(offset, length === undefined ? size : offset + length);
          expect(sameBytes(got, want), `range ${offset}+${length}`).toBe(true);
          const stream = await tier().readStream(key, { range: { offset, length } });
          expect(sameBytes(await collect(stream!), want), `stream range ${offset}+${length}`).toBe(true);
        }
      });

      it('refuses ranges past the end or malformed with INVALID_RANGE', async () => {
        if (!canPut()) return;
        await expectTierError(tier().read(key, { range: { offset: size + 1 } }), 'INVALID_RANGE');
        await expectTierError(tier().read(key, { range: { offset: size + 1, length: 0 } }), 'INVALID_RANGE');
        await expectTierError(tier().read(key, { range: { offset: size - 1, length: 2 } }), 'INVALID_RANGE');
        await expectTierError(tier().read(key, { range: { offset: 0, length: size + 1 } }), 'INVALID_RANGE');
        await expectTierError(tier().read(key, { range: { offset: -1, length: 1 } }), 'INVALID_RANGE');
        await expectTierError(tier().read(key, { range: { offset: 1.5, length: 1 } }), 'INVALID_RANGE');
        await expectTierError(tier().readStream(key, { range: { offset: size + 5 } }), 'INVALID_RANGE');
        await expectTierError(tier().readInto(key, new Uint8Array(4), { offset: size + 1 }), 'INVALID_RANGE');
        await expectTierError(
          tier().readInto(key, new Uint8Array(4), { offset: size - 2, length: 4 }),
          'INVALID_RANGE',
        );
      });

      it('readInto fills exactly the requested part of the target', async () => {
        if (!canPut()) return;
        const target = new Uint8Array(100).fill(7);
        expect(await tier().readInto(key, target.subarray(10, 60), { offset: 300 })).toBe(50);
        expect(sameBytes(target.subarray(10, 60), bytes.subarray(300, 350))).toBe(true);
        expect(target.subarray(0, 10).every((b) => b === 7)).toBe(true);
        expect(target.subarray(60).every((b) => b === 7)).toBe(true);
        // Near the end, a large target is filled only as far as the object goes.
        const tail = new Uint8Array(64);
        expect(await tier().readInto(key, tail, { offset: size - 10 })).toBe(10);
        expect(sameBytes(tail.subarray(0, 10), bytes.subarray(size - 10))).toBe(true);
        expect(await tier().readInto(key, tail, { offset: size })).toBe(0);
        expect(await tier().readInto(key, tail, { offset: 20, length: 5 })).toBe(5);
        expect(sameBytes(tail.subarray(0, 5), bytes.subarray(20, 25))).toBe(true);
        await expectTierError(tier().readInto(key, new Uint8Array(4), { length: 5 }), 'INVALID_RANGE');
      });
    });

    it('deletes idempotently', async () => {
      if (!tier().capability.delete || !canPut()) return;
      const key = fresh('delete');
      await put(key, patternBytes(100, 9));
      await tier().delete(key);
      expect(await tier().stat(key)).toBeUndefined();
      expect(await tier().read(key)).toBeUndefined();
      await tier().delete(key);
      await tier().delete(fresh('never-existed'));
    });

    it(
      'lists by prefix, sorted, with sizes',
      async () => {
        if (!tier().capability.list || !canPut()) return;
        const base = fresh('list');
        const keys = [`${base}/a/1`, `${base}/a/2`, `${base}/a/sub/3`, `${base}/ab`, `${base}/b/4`];
        for (const [i, k] of keys.entries()) await put(k, patternBytes(i + 1, i));
        const all: { key: string; size: number }[] = [];
        for await (const m of tier().list(`${base}/`)) all.push({ key: m.key, size: m.size });
        expect(all.map((m) => m.key)).toEqual(keys);
        expect(all.map((m) => m.size)).toEqual([1, 2, 3, 4, 5]);
        const inA: string[] = [];
        for await (const m of tier().list(`${base}/a/`)) inA.push(m.key);
        expect(inA).toEqual(keys.slice(0, 3));
        const startsA: string[] = [];
        for await (const m of tier().list(`${base}/a`)) startsA.push(m.key);
        expect(startsA).toEqual(keys.slice(0, 4));
        const none: string[] = [];
        for await (const m of tier().list(`${base}/zzz/`)) none.push(m.key);
        expect(none).toEqual([]);
        const everything: string[] = [];
        for await (const m of tier().list()) everything.push(m.key);
        for (const k of keys) expect(everything).toContain(k);
        await expect(
          (async () => {
            for await (const _ of tier().list('../')) void _;
          })(),
        ).rejects.toMatchObject({ code: 'INVALID_KEY' });
      },
      timeout,
    );

    it(
      'serves concurrent readers and writers of one key whole objects, never a mix',
      async () => {
        if (!tier().capability.write) return;
        const key = fresh('race');
        const versions = [1, 2, 3, 4].map((v) => patternBytes(256 * 1024 + v, 1000 + v));
        await tier().write(key, versions[0]!);
        const reads: Promise<Uint8Array | undefined>[] = [];
        const writes: Promise<unknown>[] = [];
        for (let round = 0; round < 3; round++) {
          for (const v of versions) {
            writes.push(tier().write(key, v));
            reads.push(tier().read(key));
          }
        }
        await Promise.all(writes);
        for (const got of await Promise.all(reads)) {
          expect(got).toBeDefined();
          expect(versions.some((v) => sameBytes(got, v))).toBe(true);
        }
        const final = await tier().read(key);
        expect(versions.some((v) => sameBytes(final, v))).toBe(true);
      },
      timeout,
    );

    it(
      'closes idempotently and refuses work afterwards',
      async () => {
        const own = await options.create();
        await own.tier.close();
        await own.tier.close();
        let caught: unknown;
        try {
          await own.tier.read(fresh('after-close'));
        } catch (err) {
          caught = err;
        }
        expect(isTierError(caught)).toBe(true);
        await own.cleanup?.();
      },
      timeout,
    );
  });
}
