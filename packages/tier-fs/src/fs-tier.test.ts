import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, statfs, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isTierError } from '@tierkit/tier-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeObject, verifyObject } from '../test-fixtures/content.mjs';
import { createFsTier, FsTier, fsTierFromUrl, parseSize } from './index.js';
import { FIXTURES, filesUnder, tempDir } from './test-utils.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

async function expectCode(p: Promise<unknown>, code: string): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    expect(isTierError(err) ? err.code : String(err)).toBe(code);
    return err;
  }
  throw new Error(`expected ${code}, got success`);
}

let base = '';
let cleanupBase = async () => {};
let n = 0;
const freshRoot = () => join(base, `r${++n}`);
beforeAll(async () => {
  ({ dir: base, cleanup: cleanupBase } = await tempDir('unit'));
});
afterAll(() => cleanupBase());

describe('layout on disk', () => {
  it('stores a complete object as a plain file at its key path; bookkeeping only in .tierkit', async () => {
    const root = freshRoot();
    const tier = createFsTier({ root });
    await tier.open();
    await tier.write('models/llama/model.gguf', enc('weights'), { source: { size: 7, etag: '"e1"' } });
    await tier.pin('models/llama/model.gguf');
    expect(await readFile(join(root, 'models', 'llama', 'model.gguf'), 'utf8')).toBe('weights');
    expect((await readdir(root)).sort()).toEqual(['.tierkit', 'models']);
    expect((await readdir(join(root, '.tierkit'))).sort()).toEqual([
      'locks',
      'meta',
      'partial',
      'pins',
      'tmp',
      'uses',
    ]);
    for await (const m of tier.list()) expect(m.key.startsWith('.tierkit')).toBe(false);
    for (const key of ['.tierkit/tmp/x', '.tierkit', '.TierKit/meta', '.tierkit./x', '.tierkit /y']) {
      await expectCode(tier.write(key, enc('x')), 'INVALID_KEY');
      await expectCode(tier.read(key), 'INVALID_KEY');
      await expectCode(tier.delete(key), 'INVALID_KEY');
    }
    await expectCode(
      (async () => {
        for await (const _ of tier.list('.tierkit/')) void _;
      })(),
      'INVALID_KEY',
    );
    // Files put there by other programs are objects too.
    await writeFile(join(root, 'models', 'copied.bin'), 'by cp');
    expect(dec(await tier.read('models/copied.bin'))).toBe('by cp');
    // …unless their names are not valid keys: never listed.
    await writeFile(join(root, 'models', 'back\\slash'), 'x');
    await writeFile(join(root, 'models', 'tab\tname'), 'x');
    const keys: string[] = [];
    for await (const m of tier.list('models/')) keys.push(m.key);
    expect(keys).toEqual(['models/copied.bin', 'models/llama/model.gguf']);
    await tier.close();
    await expectCode(tier.read('models/copied.bin'), 'CLOSED');
  });

  it('keeps source metadata consistent with the data file; a mismatched sidecar is ignored', async () => {
    const root = freshRoot();
    const tier = new FsTier({ root });
    const source = { size: 5, etag: '"abc"', lastModified: 1_700_000_000_000 };
    const meta = await tier.write('a/b', enc('hello'), { source });
    expect(meta.source).toEqual(source);
    expect((await tier.stat('a/b'))?.source).toEqual(source);
    // Survives a restart (read from the sidecar).
    await tier.close();
    const again = new FsTier({ root });
    expect((await again.stat('a/b'))?.source).toEqual(source);
    let listed: unknown;
    for await (const m of again.list('a/')) listed = m.source;
    expect(listed).toEqual(source);
    // Another program replaces the file: the sidecar no longer names it, so it is ignored.
    await writeFile(join(root, 'a', 'b.new'), 'HELLO');
    execFileSync('mv', [join(root, 'a', 'b.new'), join(root, 'a', 'b')]);
    const st = await again.stat('a/b');
    expect(st?.size).toBe(5);
    expect(st?.source).toBeUndefined();
    // A write without source drops the old source metadata.
    await again.write('a/c', enc('x'), { source });
    await again.write('a/c', enc('y'));
    expect((await again.stat('a/c'))?.source).toBeUndefined();
    // Delete removes the sidecar too.
    await again.write('a/d', enc('z'), { source });
    await again.delete('a/d');
    const sidecars = await filesUnder(join(root, '.tierkit', 'meta'));
    // a/b's (stale, ignored) and a/c's (its block CRC32Cs only, no source).
    expect(sidecars).toHaveLength(2);
    await again.close();
  });

  it('etag derives from size, mtime and inode and changes with every write', async () => {
    const tier = new FsTier({ root: freshRoot() });
    const a = await tier.write('k', enc('same'));
    const b = await tier.write('k', enc('same'));
    expect(a.etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
    expect(b.etag).not.toBe(a.etag);
    expect((await tier.stat('k'))?.etag).toBe(b.etag);
    await tier.close();
  });

  it('refuses a key that clashes with a file on the way, and a stream of non-bytes, publishing nothing', async () => {
    const root = freshRoot();
    const tier = new FsTier({ root });
    await tier.write('a', enc('file'));
    await expectCode(tier.write('a/b', enc('x')), 'UNAVAILABLE');
    expect(await tier.read('a/b')).toBeUndefined();
    async function* notBytes() {
      yield enc('ok');
      yield 'nope' as unknown as Uint8Array;
    }
    await expectCode(tier.write('s', notBytes()), 'INVALID_ARGUMENT');
    expect(await tier.stat('s')).toBeUndefined();
    expect(await readdir(join(root, '.tierkit', 'tmp'))).toEqual([]);
    await tier.close();
  });

  it('aborts a streamed write mid-way: ABORTED, nothing published, temp removed', async () => {
    const root = freshRoot();
    const tier = new FsTier({ root });
    await tier.write('big', enc('old'));
    const ac = new AbortController();
    async function* slow() {
      for (let i = 0; i < 100; i++) {
        if (i === 3) ac.abort();
        yield new Uint8Array(1000);
        await new Promise((r) => setImmediate(r));
      }
    }
    await expectCode(tier.write('big', slow(), { signal: ac.signal }), 'ABORTED');
    expect(dec(await tier.read('big'))).toBe('old');
    expect(await readdir(join(root, '.tierkit', 'tmp'))).toEqual([]);
    await tier.close();
  });
});

describe('reads', () => {
  it('splits large readInto into parallel positioned reads straight into the target', async () => {
    const tier = new FsTier({
      root: freshRoot(),
      parallelReadThreshold: 1 << 20,
      readChunkSize: 300_000,
      readConcurrency: 3,
    });
    const obj = makeObject('big/obj', 1, 5 * 1024 * 1024 + 11);
    await tier.write('big/obj', obj);
    const target = new Uint8Array(obj.byteLength + 100).fill(0xab);
    const view = target.subarray(50, 50 + obj.byteLength);
    expect(await tier.readInto('big/obj', view)).toBe(obj.byteLength);
    expect(Buffer.compare(Buffer.from(view), Buffer.from(obj))).toBe(0);
    expect(target.subarray(0, 50).every((b) => b === 0xab)).toBe(true);
    expect(target.subarray(50 + obj.byteLength).every((b) => b === 0xab)).toBe(true);
    // A large range in the middle.
    const mid = new Uint8Array(3 * 1024 * 1024);
    expect(await tier.readInto('big/obj', mid, { offset: 777 })).toBe(mid.byteLength);
    expect(Buffer.compare(Buffer.from(mid), Buffer.from(obj.subarray(777, 777 + mid.byteLength)))).toBe(0);
    const ranged = await tier.read('big/obj', { range: { offset: 123, length: 2 * 1024 * 1024 } });
    expect(Buffer.compare(Buffer.from(ranged!), Buffer.from(obj.subarray(123, 123 + 2 * 1024 * 1024)))).toBe(
      0,
    );
    await tier.close();
  });

  it('discovers objects another process (here: another instance) wrote', async () => {
    const root = freshRoot();
    const a = new FsTier({ root });
    const b = new FsTier({ root });
    await Promise.all([a.ready, b.ready]);
    await b.write('shared/x', enc('from b'));
    expect(a.policy.has('shared/x')).toBe(false);
    expect((await a.stat('shared/x'))?.size).toBe(6);
    expect(a.policy.has('shared/x')).toBe(true);
    await Promise.all([a.close(), b.close()]);
  });
});

describe('capacity', () => {
  it('evicts least recently used entries to stay under maxBytes; onEvict and evictions report them', async () => {
    const evicted: [string, number][] = [];
    const tier = new FsTier({ root: freshRoot(), maxBytes: 3000, onEvict: (k, s) => evicted.push([k, s]) });
    await tier.write('a', new Uint8Array(1000));
    await tier.write('b', new Uint8Array(1000));
    await tier.write('c', new Uint8Array(1000));
    await tier.read('a');
    await tier.write('d', new Uint8Array(1000));
    expect(evicted).toEqual([['b', 1000]]);
    expect(tier.evictions).toBe(1);
    expect(await tier.stat('b')).toBeUndefined();
    expect(tier.usedBytes).toBe(3000);
    // Replacing an object counts only the difference.
    await tier.write('d', new Uint8Array(1000));
    expect(tier.evictions).toBe(1);
    await expectCode(tier.write('huge', new Uint8Array(3001)), 'CAPACITY');
    await tier.close();
  });

  it('never evicts pinned entries; pins persist across restarts; CAPACITY publishes nothing', async () => {
    const root = freshRoot();
    const tier = new FsTier({ root, maxBytes: 2500 });
    await tier.write('p1', new Uint8Array(1000));
    await tier.write('p2', new Uint8Array(1000));
    await tier.pin('p1');
    await tier.pin('p2');
    await expectCode(tier.write('x', new Uint8Array(1000)), 'CAPACITY');
    expect(await tier.stat('x')).toBeUndefined();
    expect(await readdir(join(root, '.tierkit', 'tmp'))).toEqual([]);
    await tier.close();
    const again = new FsTier({ root, maxBytes: 2500 });
    await again.ready;
    expect(again.isPinned('p1')).toBe(true);
    await expectCode(again.write('x', new Uint8Array(1000)), 'CAPACITY');
    await again.unpin('p1');
    await again.write('x', new Uint8Array(1000));
    expect(await again.stat('p1')).toBeUndefined();
    expect(await again.stat('p2')).toBeDefined();
    await again.close();
  });

  it('a pin made by another process is honoured at eviction time', async () => {
    const root = freshRoot();
    const a = new FsTier({ root, maxBytes: 2000 });
    const b = new FsTier({ root, maxBytes: 2000 });
    await Promise.all([a.ready, b.ready]);
    await a.write('one', new Uint8Array(1000));
    await a.write('two', new Uint8Array(1000));
    await b.pin('one');
    await a.write('three', new Uint8Array(1000));
    expect(await a.stat('one')).toBeDefined();
    expect(await a.stat('two')).toBeUndefined();
    await Promise.all([a.close(), b.close()]);
  });

  it('never evicts an entry that is being read (an open readStream), and serves it whole', async () => {
    const tier = new FsTier({ root: freshRoot(), maxBytes: 3 * 1024 * 1024 });
    const obj = makeObject('hot', 1, 2 * 1024 * 1024);
    await tier.write('hot', obj);
    const stream = await tier.readStream('hot');
    const first = await new Promise<Buffer>((resolve) => stream!.once('data', resolve));
    stream!.pause();
    // Pressure: 'hot' is the least recently used entry, but it is in use.
    await tier.write('cold1', new Uint8Array(1024 * 1024));
    await expectCode(tier.write('cold2', new Uint8Array(2 * 1024 * 1024)), 'CAPACITY');
    expect(await tier.stat('hot')).toBeDefined();
    const parts: Buffer[] = [first];
    stream!.resume();
    for await (const c of stream!) parts.push(c as Buffer);
    expect(Buffer.compare(Buffer.concat(parts), Buffer.from(obj))).toBe(0);
    // Released: now it can go.
    await new Promise((r) => setImmediate(r));
    await tier.write('cold2', new Uint8Array(2 * 1024 * 1024));
    expect(await tier.stat('hot')).toBeUndefined();
    await tier.close();
  });

  it('purges entries idle for longer than a duration', async () => {
    let now = 1_000_000;
    const tier = new FsTier({ root: freshRoot(), clock: () => now });
    await tier.write('old', enc('o'));
    now += 10_000;
    await tier.write('new', enc('n'));
    expect(await tier.purgeIdle(5_000)).toEqual(['old']);
    expect(await tier.stat('old')).toBeUndefined();
    expect(tier.evictions).toBe(1);
    await tier.close();
  });

  const canMount = process.platform === 'linux' && process.getuid?.() === 0 && mountWorks();
  it.skipIf(!canMount)(
    'ENOSPC is CAPACITY, the temp file is removed, nothing is lost (real tmpfs)',
    async () => {
      const mnt = join(base, 'small-fs');
      await mkdir(mnt, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
      try {
        const tier = new FsTier({ root: mnt });
        await tier.write('keep', makeObject('keep', 1, 1024 * 1024));
        const err = await expectCode(tier.write('too-big', new Uint8Array(6 * 1024 * 1024)), 'CAPACITY');
        expect((err as { retryable: boolean }).retryable).toBe(false);
        expect(await readdir(join(mnt, '.tierkit', 'tmp'))).toEqual([]);
        expect(await tier.stat('too-big')).toBeUndefined();
        expect(verifyObject((await tier.read('keep'))!, 'keep').ok).toBe(true);
        await tier.close();

        // minFreeRatio keeps half of this filesystem free by evicting, measured with statfs.
        const limited = new FsTier({ root: mnt, minFreeRatio: 0.5 });
        for (let i = 0; i < 6; i++) await limited.write(`chunk/${i}`, new Uint8Array(512 * 1024));
        const s = await statfs(mnt);
        expect(s.bavail / s.blocks).toBeGreaterThanOrEqual(0.5);
        expect(limited.evictions).toBeGreaterThan(0);
        expect(await limited.stat('chunk/5')).toBeDefined();
        await limited.close();
      } finally {
        execFileSync('umount', [mnt]);
      }
    },
  );

  const nobody = process.platform === 'linux' && process.getuid?.() === 0;
  it.skipIf(!nobody)('EACCES is UNAVAILABLE, not retryable, and says what to do', async () => {
    const root = freshRoot();
    const seeded = new FsTier({ root });
    await seeded.write('ro/file', enc('x'));
    await seeded.close();
    await chmod(base, 0o755);
    const run = spawnSync(process.execPath, [join(FIXTURES, 'eacces.mjs'), root], { uid: 65534, gid: 65534 });
    const out = JSON.parse(run.stdout.toString().trim().split('\n').at(-1) ?? '{}');
    expect(out, run.stderr.toString()).toMatchObject({ code: 'UNAVAILABLE', retryable: false });
    expect(out.message).toMatch(/permission denied.*give this process read and write access/);
  });
});

function mountWorks(): boolean {
  try {
    execFileSync('mount', ['--version'], { stdio: 'ignore' });
    return existsSync('/proc/filesystems');
  } catch {
    return false;
  }
}

describe('restart', () => {
  it('touch() moves an entry and is journaled; uses in one millisecond keep their order across a restart', async () => {
    const root = freshRoot();
    const at = 1_700_000_000_000;
    const tier = new FsTier({ root, clock: () => at });
    for (const k of ['a', 'b', 'c', 'd']) await tier.write(k, new Uint8Array(10));
    // All at the same instant: only the order of the calls says which is newest.
    for (const k of ['d', 'b', 'a', 'c']) tier.touch(k);
    tier.touch('not-there'); // ignored
    expect(() => tier.touch('../x')).toThrow(/invalid key/);
    expect([...tier.policy.entries()].map((e) => e.key)).toEqual(['d', 'b', 'a', 'c']);
    await tier.close();
    const again = await new FsTier({ root, clock: () => at }).open();
    expect([...again.policy.entries()].map((e) => e.key)).toEqual(['d', 'b', 'a', 'c']);
    expect(again.policy.has('not-there')).toBe(false);
    await again.close();
  });

  it('keeps last-use times across a restart; eviction order after it follows them', async () => {
    const root = freshRoot();
    const tier = new FsTier({ root, maxBytes: 3000 });
    await tier.write('a', new Uint8Array(1000));
    await new Promise((r) => setTimeout(r, 5));
    await tier.write('b', new Uint8Array(1000));
    await new Promise((r) => setTimeout(r, 5));
    await tier.write('c', new Uint8Array(1000));
    await new Promise((r) => setTimeout(r, 5));
    await tier.read('a'); // a is now the most recently used, though written first
    const usedA = tier.policy.get('a')!.lastUsed;
    await tier.close();
    // mtime order (a oldest) would evict a: make mtimes tell the same story for certain.
    const t = new Date(Date.now() - 60_000);
    await utimes(join(root, 'a'), t, t);

    const again = new FsTier({ root, maxBytes: 3000 });
    await again.ready;
    expect(again.policy.get('a')!.lastUsed).toBe(usedA);
    expect([...again.policy.entries()].map((e) => e.key)).toEqual(['b', 'c', 'a']);
    await again.write('d', new Uint8Array(1000));
    expect(await again.stat('b')).toBeUndefined();
    expect(await again.stat('a')).toBeDefined();
    await again.close();
  });

  it('rebuilds the index of 20,000 files quickly', async () => {
    const root = freshRoot();
    // Made directly (as a pre-baked cache would be), synchronously: it is the fastest way.
    for (let d = 0; d < 100; d++) {
      const dir = join(root, 'kv', `d${d}`);
      mkdirSync(dir, { recursive: true });
      for (let i = 0; i < 200; i++) writeFileSync(join(dir, `c${i}`), 'x'.repeat(i % 7));
    }
    let t0 = performance.now();
    const tier = new FsTier({ root, maxBytes: 1 << 30 });
    await tier.ready;
    const cold = performance.now() - t0;
    expect(tier.count).toBe(20_000);
    await tier.read('kv/d5/c5');
    await tier.close();
    t0 = performance.now();
    const again = new FsTier({ root, maxBytes: 1 << 30 });
    await again.ready;
    const warm = performance.now() - t0;
    expect(again.count).toBe(20_000);
    expect([...again.policy.entries()].at(-1)?.key).toBe('kv/d5/c5');
    await again.close();
    console.log(
      `index of 20,000 files: first open ${cold.toFixed(0)} ms, reopen with journal ${warm.toFixed(0)} ms`,
    );
    expect(cold).toBeLessThan(15_000);
    await rm(root, { recursive: true, force: true });
  }, 60_000);
});

describe('config', () => {
  it('builds from a file: URL with serializable options', async () => {
    const root = freshRoot();
    const url = `${pathToFileURL(root).href}?maxBytes=1MiB&minFreeRatio=0.01&fsync=false&name=nvme`;
    const tier = fsTierFromUrl(url, { readConcurrency: 2 });
    await tier.ready;
    expect(tier.name).toBe('nvme');
    await expectCode(tier.write('x', new Uint8Array(1024 * 1024 + 1)), 'CAPACITY');
    await tier.close();
    expect(() => fsTierFromUrl('s3://bucket/x')).toThrow(/file: URL/);
    expect(() => fsTierFromUrl(`${pathToFileURL(root).href}?bogus=1`)).toThrow(/unknown option/);
    expect(() => fsTierFromUrl(`${pathToFileURL(root).href}?maxBytes=lots`)).toThrow(/not a size/);
    expect(parseSize('s', '10GiB')).toBe(10 * 1024 ** 3);
    expect(parseSize('s', '10GB')).toBe(10e9);
    expect(parseSize('s', '512')).toBe(512);
    expect(() => new FsTier({ root, minFreeRatio: 2 })).toThrow(/minFreeRatio/);
    expect(() => new FsTier({ root: '' })).toThrow(/root/);
  });

  it('reports a root it cannot use through ready and every op', async () => {
    const file = join(base, 'not-a-dir');
    await writeFile(file, 'x');
    const tier = new FsTier({ root: file, create: false });
    await expect(tier.ready).rejects.toBeDefined();
    await expect(tier.read('k')).rejects.toSatisfy(isTierError);
    await tier.close();
  });
});
