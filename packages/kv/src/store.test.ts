import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LruPolicy } from '@tierkit/policy-lru';
import { createMemoryTier, createStack, isTierError } from '@tierkit/tier-core';
import { FsTier } from '@tierkit/tier-fs';
import { afterEach, describe, expect, it } from 'vitest';
import { KvStore } from './store.js';
import { chunkBytes, LOWER_KINDS, memoryOver, type TestStack, tokensOf } from './test-stacks.js';

const CHUNK = 64; // tokens per chunk: small requests, many chunks
const opened: TestStack[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.cleanup();
});

async function stackOver(kind: (typeof LOWER_KINDS)[number], memoryBytes?: number) {
  const s = await memoryOver(kind, memoryBytes);
  opened.push(s);
  return s;
}

function storeOn(s: TestStack, extra: Partial<ConstructorParameters<typeof KvStore>[0]> = {}) {
  return new KvStore({
    tier: s.stack,
    model: 'meta-llama/Llama-3.1-8B',
    worldSize: 2,
    workerId: 1,
    chunkSize: CHUNK,
    policies: [s.policy],
    ...extra,
  });
}

describe.each(LOWER_KINDS)('KvStore over memory → %s', (kind) => {
  it('round-trips chunks byte-exact, through the stack and after a restart', async () => {
    let s = await stackOver(kind);
    const kv = storeOn(s);
    const chunks = kv.chunks(tokensOf(1, 5 * CHUNK + 17)); // 5 full chunks and a partial one
    expect(chunks).toHaveLength(6);
    // Odd sizes: a 1-byte chunk, a partial chunk, none a multiple of 4 KiB but one.
    const sizes = [65_537, 1, 300_000, 4096, 70_001, 12_345];
    const data = chunks.map((_, i) => chunkBytes(1, i, sizes[i]!));
    expect(await kv.put(chunks, data)).toEqual({
      written: 6,
      skipped: 0,
      bytes: sizes.reduce((a, b) => a + b),
    });
    expect(await kv.put(chunks, data)).toMatchObject({ written: 0, skipped: 6 });

    const got = await kv.get(chunks);
    expect(got.hits).toBe(6);
    got.chunks.forEach((b, i) => {
      expect(Buffer.from(b!).equals(Buffer.from(data[i]!))).toBe(true);
    });
    const targets = sizes.map((n) => new Uint8Array(n + 100).fill(0xee));
    const into = await kv.get(chunks, { into: targets });
    into.chunks.forEach((b, i) => {
      expect(b!.buffer).toBe(targets[i]!.buffer); // read into the caller's buffer
      expect(Buffer.from(b!).equals(Buffer.from(data[i]!))).toBe(true);
      expect(targets[i]![sizes[i]!]).toBe(0xee); // nothing written past the chunk
    });
    // The lower tier holds every chunk itself.
    for (const [i, c] of chunks.entries()) {
      expect(Buffer.from((await s.lower.read(c.key))!).equals(Buffer.from(data[i]!))).toBe(true);
    }

    // A restart: an empty memory tier, the lower tier reopened on the same files.
    s = await s.reopen();
    opened.push(s);
    const again = storeOn(s);
    expect(await again.contains(chunks)).toBe(6);
    const back = await again.get(again.chunks(tokensOf(1, 5 * CHUNK + 17)));
    expect(back.hits).toBe(6);
    back.chunks.forEach((b, i) => {
      expect(Buffer.from(b!).equals(Buffer.from(data[i]!))).toBe(true);
    });
    expect(s.stack.stats().promotions).toBe(6);
    expect(s.memory.size).toBe(back.bytes); // promoted into memory on the way
  });

  it('counts the prefix hit across tiers: chunks in memory, in the lower tier, then a gap', async () => {
    const s = await stackOver(kind);
    const kv = storeOn(s);
    const chunks = kv.chunks(tokensOf(2, 8 * CHUNK));
    const bytes = (i: number) => chunkBytes(2, i, 1000 + i);
    await s.memory.write(chunks[0]!.key, bytes(0));
    await s.memory.write(chunks[1]!.key, bytes(1));
    await s.lower.write(chunks[2]!.key, bytes(2));
    await s.lower.write(chunks[3]!.key, bytes(3));
    await s.memory.write(chunks[4]!.key, bytes(4));
    await s.lower.write(chunks[4]!.key, bytes(4));
    // chunk 5 missing everywhere; 6 and 7 present but unreachable by a prefix
    await s.lower.write(chunks[6]!.key, bytes(6));
    await s.memory.write(chunks[7]!.key, bytes(7));

    expect(await kv.contains(chunks)).toBe(5);
    expect(await kv.contains(chunks, { exact: true })).toBe(5);
    expect(await kv.contains(chunks.slice(0, 3))).toBe(3);
    expect(await kv.contains(chunks.slice(5))).toBe(0);
    expect(await kv.contains([])).toBe(0);
    const got = await kv.get(chunks, { into: chunks.map(() => new Uint8Array(2000)) });
    expect(got.hits).toBe(5);
    expect(got.chunks.slice(5)).toEqual([undefined, undefined, undefined]);
    got.chunks.slice(0, 5).forEach((b, i) => {
      expect(Buffer.from(b!).equals(Buffer.from(bytes(i)))).toBe(true);
    });
    // Other workers' chunks of the same tokens are other keys.
    const other = storeOn(s, { workerId: 0 });
    expect(await other.contains(other.chunks(tokensOf(2, 8 * CHUNK)))).toBe(0);
    expect(kv.stats()).toMatchObject({ lookups: 5, prefixHitChunks: 13, chunksRead: 5, chunksMissed: 3 });
  });
});

describe('eviction keeps a request’s prefix and drops its suffix first', () => {
  const SIZE = 10_000;

  it('memory tier over fs: a later request evicts the suffix of an earlier one, not its prefix', async () => {
    // Room for 10 chunks; requests A and B take 4 each, C's 4 must push 2 out.
    const s = await stackOver('fs', 10 * SIZE);
    const kv = storeOn(s);
    const [a, b, c] = [1, 2, 3].map((r) => kv.chunks(tokensOf(10 + r, 4 * CHUNK)));
    for (const [r, req] of [a!, b!, c!].entries()) {
      await kv.put(
        req,
        req.map((_, i) => chunkBytes(r, i, SIZE)),
      );
    }
    const inMemory = async (req: typeof a) =>
      Promise.all(req!.map(async (ch) => (await s.memory.stat(ch.key)) !== undefined));
    expect(await inMemory(a)).toEqual([true, true, false, false]);
    expect(await inMemory(b)).toEqual([true, true, true, true]);
    expect(await kv.contains(a!)).toBe(4); // the suffix is still in the fs tier
  });

  it('a get re-orders: the prefix of what was read last is evicted last (and fails without the hint)', async () => {
    for (const keepPrefix of [true, false]) {
      const s = await stackOver('fs', 8 * SIZE);
      // concurrency 1: reads touch chunks in prefix order, the worst case for a plain LRU.
      const kv = storeOn(s, { keepPrefix, concurrency: 1 });
      const a = kv.chunks(tokensOf(21, 4 * CHUNK));
      const b = kv.chunks(tokensOf(22, 4 * CHUNK));
      await kv.put(
        a,
        a.map((_, i) => chunkBytes(1, i, SIZE)),
      );
      await kv.put(
        b,
        b.map((_, i) => chunkBytes(2, i, SIZE)),
      );
      expect((await kv.get(b)).hits).toBe(4);
      expect((await kv.get(a)).hits).toBe(4); // A is now the more recent request
      const c = kv.chunks(tokensOf(23, 6 * CHUNK));
      await kv.put(
        c,
        c.map((_, i) => chunkBytes(3, i, SIZE)),
      );
      const held = await Promise.all(b.map(async (ch) => (await s.memory.stat(ch.key)) !== undefined));
      const heldA = await Promise.all(a.map(async (ch) => (await s.memory.stat(ch.key)) !== undefined));
      if (keepPrefix) {
        expect(held).toEqual([false, false, false, false]);
        expect(heldA).toEqual([true, true, false, false]);
      } else {
        expect(heldA).not.toEqual([true, true, false, false]); // a plain LRU drops A's prefix first
      }
    }
  });

  it('fs tier with its own capacity (its policy found on the tier): suffix evicted first, pins kept', async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-kv-fscap-'));
    const fs = new FsTier({ root, fsync: false, maxBytes: 6 * SIZE, policy: new LruPolicy() });
    try {
      const kv = new KvStore({ tier: fs, model: 'm', chunkSize: CHUNK });
      const a = kv.chunks(tokensOf(31, 4 * CHUNK));
      const b = kv.chunks(tokensOf(32, 4 * CHUNK));
      await kv.put(
        a,
        a.map((_, i) => chunkBytes(1, i, SIZE)),
      );
      await kv.put(
        b,
        b.map((_, i) => chunkBytes(2, i, SIZE)),
      );
      expect(await kv.contains(a, { exact: true })).toBe(2);
      expect(await fs.stat(a[1]!.key)).toBeDefined();
      expect(await fs.stat(a[2]!.key)).toBeUndefined();
      expect(await fs.stat(a[3]!.key)).toBeUndefined();

      // Pinned chunks survive pressure that would otherwise take them.
      await kv.pin(b);
      const c = kv.chunks(tokensOf(33, 2 * CHUNK));
      await kv.put(
        c,
        c.map((_, i) => chunkBytes(3, i, SIZE)),
      );
      expect(await kv.contains(b, { exact: true })).toBe(4);
      expect(await kv.contains(a, { exact: true })).toBe(0);
      await kv.unpin(b);
      // C is older than B now (B was looked up since): C goes first, then B's suffix.
      const d = kv.chunks(tokensOf(34, 4 * CHUNK));
      await kv.put(
        d,
        d.map((_, i) => chunkBytes(4, i, SIZE)),
      );
      expect(await kv.contains(b, { exact: true })).toBe(2); // unpinned: B's suffix went first
    } finally {
      await fs.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it("the eviction hint reaches an fs tier's journal: the suffix-first order survives a restart", async () => {
    const root = await mkdtemp(join(tmpdir(), 'tierkit-kv-journal-'));
    try {
      const fs = new FsTier({ root, fsync: false, policy: new LruPolicy() });
      const kv = new KvStore({ tier: fs, model: 'm', chunkSize: CHUNK });
      const a = kv.chunks(tokensOf(41, 4 * CHUNK));
      // Written prefix-last, then read back in an order that is not the prefix order.
      await kv.put(
        a,
        a.map((_, i) => chunkBytes(5, i, SIZE)),
      );
      for (const i of [0, 3, 1, 2]) await fs.read(a[i]!.key);
      await kv.get(a);
      await fs.close();
      const again = await new FsTier({ root, fsync: false, policy: new LruPolicy() }).open();
      // Least recently used first: the suffix, then towards the prefix.
      expect([...again.policy.entries()].map((e) => e.key)).toEqual([...a].reverse().map((c) => c.key));
      await again.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('pins in a memory tier hold against pressure', async () => {
    const policy = new LruPolicy();
    const memory = createMemoryTier({ maxBytes: 4 * SIZE, policy });
    const kv = new KvStore({ tier: createStack([memory]), model: 'm', chunkSize: CHUNK, policies: [policy] });
    const a = kv.chunks(tokensOf(41, 2 * CHUNK));
    await kv.put(
      a,
      a.map((_, i) => chunkBytes(1, i, SIZE)),
    );
    await kv.pin(a);
    const b = kv.chunks(tokensOf(42, 4 * CHUNK));
    await kv.put(
      b,
      b.map((_, i) => chunkBytes(2, i, SIZE)),
      { skipExisting: false },
    );
    expect(await kv.contains(a)).toBe(2);
  });
});

describe('KvStore input checks', () => {
  it('refuses mismatched batches and bad options with INVALID_ARGUMENT', async () => {
    const kv = new KvStore({ tier: createMemoryTier(), model: 'm' });
    const chunks = kv.chunks(tokensOf(1, 600));
    await expect(kv.put(chunks, [new Uint8Array(1)])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(kv.get(chunks, { into: [] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    for (const bad of [{ concurrency: 0 }, { chunkSize: 0 }, { workerId: 1 }, { model: '' }]) {
      try {
        new KvStore({ tier: createMemoryTier(), model: 'm', ...bad });
        expect.unreachable();
      } catch (e) {
        expect(isTierError(e, 'INVALID_ARGUMENT')).toBe(true);
      }
    }
  });

  it('honours an aborted signal', async () => {
    const kv = new KvStore({ tier: createMemoryTier(), model: 'm' });
    const chunks = kv.chunks(tokensOf(1, 600));
    const signal = AbortSignal.abort();
    await expect(kv.contains(chunks, { signal })).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(kv.get(chunks, { signal })).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(
      kv.put(
        chunks,
        chunks.map(() => new Uint8Array(1)),
        { signal },
      ),
    ).rejects.toMatchObject({
      code: 'ABORTED',
    });
  });
});
