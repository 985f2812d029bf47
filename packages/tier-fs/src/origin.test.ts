/**
 * A directory served as an origin (`readOnly: true`): a model share on a
 * read-only mount. The read-only bind mount is real (as root); any attempt to
 * write under it would fail with EROFS, so the reads passing prove none is made.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createStack, isTierError } from '@tierkit/tier-core';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { FsTier, fsTierFromUrl } from './index.js';
import { tempDir } from './test-utils.js';

async function expectCode(p: Promise<unknown>, code: string): Promise<Error> {
  try {
    await p;
  } catch (err) {
    expect(isTierError(err) ? err.code : String(err)).toBe(code);
    return err as Error;
  }
  throw new Error(`expected ${code}, got success`);
}

function bytes(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed * 2654435761;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

let base = '';
let cleanup = async () => {};
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('origin'));
});
afterAll(() => cleanup());

/** A real read-only bind mount of `src` at `at`; the reason it cannot be made otherwise. */
function roBindMount(src: string, at: string): string | undefined {
  if (process.getuid?.() !== 0) return 'read-only bind mounts need root';
  mkdirSync(at, { recursive: true });
  const bind = spawnSync('mount', ['--bind', src, at], { encoding: 'utf8' });
  if (bind.status !== 0) return `mount --bind refused: ${bind.stderr.trim() || bind.error?.message}`;
  const ro = spawnSync('mount', ['-o', 'remount,bind,ro', at], { encoding: 'utf8' });
  if (ro.status !== 0) {
    spawnSync('umount', [at]);
    return `remount read-only refused: ${ro.stderr.trim()}`;
  }
  return undefined;
}

describe('read-only origin on a read-only bind mount', () => {
  const share = () => join(base, 'share');
  const mnt = () => join(base, 'ro');
  let refused: string | undefined;
  const files = new Map<string, Uint8Array>([
    ['llama/config.json', new TextEncoder().encode('{"layers":2}')],
    ['llama/model-00001-of-00002.safetensors', bytes(1, 3 * 1024 * 1024 + 17)],
    ['llama/model-00002-of-00002.safetensors', bytes(2, 1024 * 1024)],
    ['mistral/model.gguf', bytes(3, 4096)],
  ]);

  beforeAll(() => {
    for (const [key, data] of files) {
      mkdirSync(join(share(), key, '..'), { recursive: true });
      writeFileSync(join(share(), key), data);
    }
    refused = roBindMount(share(), mnt());
    if (refused) console.warn(`origin.test: skipping the read-only mount cases: ${refused}`);
  });
  afterAll(() => {
    if (!refused) spawnSync('umount', [mnt()]);
  });

  it('proves the mount refuses writes (the test is only as good as the mount)', (ctx) => {
    if (refused) ctx.skip(refused);
    expect(() => writeFileSync(join(mnt(), 'probe'), 'x')).toThrow(/EROFS|read-only/);
  });

  it('stats, reads, reads into and lists, and never writes under the root', async (ctx) => {
    if (refused) ctx.skip(refused);
    const origin = new FsTier({ root: mnt(), readOnly: true });
    await origin.ready;
    expect(origin.capability.write).toBe(false);
    expect(origin.capability.delete).toBe(false);
    for (const [key, data] of files) {
      expect((await origin.stat(key))?.size).toBe(data.byteLength);
      expect(Buffer.from((await origin.read(key))!).equals(Buffer.from(data))).toBe(true);
      const into = new Uint8Array(100);
      expect(await origin.readInto(key, into, { offset: 5 })).toBe(Math.min(100, data.byteLength - 5));
    }
    const listed: string[] = [];
    for await (const m of origin.list('llama/')) listed.push(m.key);
    expect(listed).toEqual([...files.keys()].filter((k) => k.startsWith('llama/')).sort());
    expect(await origin.stat('llama/missing')).toBeUndefined();
    await origin.close();
    expect(existsSync(join(share(), '.tierkit'))).toBe(false);
    expect((await readdir(share())).sort()).toEqual(['llama', 'mistral']);
  });

  it('refuses writes, deletes, pins and locks with UNSUPPORTED, before touching the disk', async (ctx) => {
    if (refused) ctx.skip(refused);
    const origin = fsTierFromUrl(`file://${mnt()}?readOnly=true`);
    const err = await expectCode(origin.write('new', new Uint8Array(1)), 'UNSUPPORTED');
    expect(err.message).toMatch(/read-only/);
    await expectCode(origin.delete('mistral/model.gguf'), 'UNSUPPORTED');
    await expectCode(origin.pin('mistral/model.gguf'), 'UNSUPPORTED');
    await expectCode(origin.acquireLock('mistral/model.gguf'), 'UNSUPPORTED');
    await expectCode(origin.purgeToBytes(0), 'UNSUPPORTED');
    expect(existsSync(join(share(), 'mistral/model.gguf'))).toBe(true);
    await origin.close();
  });

  it('fills a cache through a stack, block by block and whole, byte-exact', async (ctx) => {
    if (refused) ctx.skip(refused);
    const cache = new FsTier({ root: join(base, 'cache'), name: 'nvme' });
    const origin = new FsTier({ root: mnt(), readOnly: true, name: 'share' });
    const stack = createStack([cache, origin], { blockSize: 1024 * 1024 });
    const key = 'llama/model-00001-of-00002.safetensors';
    const want = files.get(key)!;
    const head = await stack.read(key, { range: { offset: 0, length: 8 } });
    expect(Buffer.from(head!).equals(Buffer.from(want.subarray(0, 8)))).toBe(true);
    for (const k of files.keys()) await stack.fill(k);
    for (const [k, data] of files) {
      expect(Buffer.from(await readFile(join(base, 'cache', k))).equals(Buffer.from(data))).toBe(true);
    }
    await stack.close();
    expect(existsSync(join(share(), '.tierkit'))).toBe(false);
  });

  it('a cache on a read-only mount names the cause and the way out', async (ctx) => {
    if (refused) ctx.skip(refused);
    const cache = new FsTier({ root: mnt() });
    const err = await expectCode(cache.ready, 'UNAVAILABLE');
    expect(err.message).toMatch(/read-only filesystem.*readOnly: true/);
  });
});

describe('read-only origin, any directory', () => {
  it('does not walk the tree at open: 50,000 files, nothing indexed until asked', async () => {
    // In memory where there is a tmpfs: 50,000 creates on a busy disk take a minute, here a second.
    const shm = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/tierkit-origin-') : undefined;
    const root = join(shm ?? base, 'many');
    onTestFinished(() => {
      if (shm) rmSync(shm, { recursive: true, force: true });
    });
    mkdirSync(root, { recursive: true });
    // touch with a thousand names per call: creating the tree is not what this test is about.
    execFileSync(
      'sh',
      ['-c', 'for d in $(seq 0 49); do mkdir d$d && (cd d$d && touch $(seq -f f%g 0 999)); done'],
      {
        cwd: root,
      },
    );
    writeFileSync(join(root, 'd7', 'f123'), 'hello');
    const origin = new FsTier({ root, readOnly: true });
    await origin.ready;
    // A cache tier indexes every file at open; an origin knows nothing until it is asked.
    expect(origin.count).toBe(0);
    expect((await origin.stat('d7/f123'))?.size).toBe(5);
    expect(origin.count).toBe(1);
    let listed = 0;
    for await (const _ of origin.list('d3/')) listed++;
    expect(listed).toBe(1000);
    await origin.close();
    expect(existsSync(join(root, '.tierkit'))).toBe(false);
    // The same directory as a cache walks it (the contrast the assertion above rests on).
    const cache = new FsTier({ root });
    await cache.ready;
    expect(cache.count).toBe(50_000);
    await cache.close();
  }, 120_000);

  it('an origin root that is missing says so; it is never created', async () => {
    const root = join(base, 'not-mounted', 'models');
    const err = await expectCode(new FsTier({ root, readOnly: true, create: true }).ready, 'UNAVAILABLE');
    expect(err.message).toMatch(/does not exist.*is the share mounted/);
    expect(existsSync(root)).toBe(false);
  });

  it('an origin root this process cannot read names the permission, not a miss', async (ctx) => {
    if (process.getuid?.() === 0) {
      // Root reads any mode: drop to nobody in a child process to see the refusal.
      const root = join(base, 'locked');
      mkdirSync(root, { recursive: true, mode: 0o700 });
      // The temp folder is 0700: let nobody reach the root, so the refusal is the root's own.
      execFileSync('chmod', ['0755', base]);
      const script = `
        const { FsTier } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
        try { await new FsTier({ root: ${JSON.stringify(root)}, readOnly: true }).ready; console.log('opened'); }
        catch (e) { console.log(e.code + ' ' + e.message); }`;
      const run = spawnSync(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          '--input-type=module',
          '-e',
          script,
        ],
        {
          encoding: 'utf8',
        },
      );
      if (run.status !== 0 || run.error)
        ctx.skip(`setpriv could not drop to nobody: ${run.stderr || run.error?.message}`);
      expect(run.stdout).toMatch(/^UNAVAILABLE .*permission denied.*give this process read access/m);
      return;
    }
    const root = join(base, 'locked');
    mkdirSync(root, { recursive: true, mode: 0o000 });
    const err = await expectCode(new FsTier({ root, readOnly: true }).ready, 'UNAVAILABLE');
    expect(err.message).toMatch(/permission denied.*read access/);
  });
});
