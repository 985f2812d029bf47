import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isTierError, keyProblem } from '@tierkit/tier-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier, isReservedKey } from './index.js';
import { tempDir } from './test-utils.js';

/** Hash of every entry under `dir` (names, types, link targets, file bytes), skipping `skip`. */
async function treeHash(dir: string, skip?: string): Promise<string> {
  const h = createHash('sha256');
  const walk = async (at: string): Promise<void> => {
    const names = (await readdir(at)).sort();
    for (const name of names) {
      const p = join(at, name);
      if (p === skip) continue;
      const st = await lstat(p);
      h.update(`${p}\0${st.mode}\0`);
      if (st.isSymbolicLink()) h.update(await readlink(p));
      else if (st.isDirectory()) await walk(p);
      else h.update(await readFile(p));
    }
  };
  await walk(dir);
  return h.digest('hex');
}

// Segments that have broken path handling somewhere.
const nasty = fc.constantFrom(
  '..',
  '.',
  '',
  '.tierkit',
  '.TIERKIT',
  '.tierkit.',
  'link',
  'flink',
  'sub',
  'evil',
  'canary',
  'outside',
  '..\\..',
  '\\',
  '\u0000',
  '\n',
  '\u007f',
  '\u0085',
  '%2e%2e',
  '~',
  'é',
  'e\u0301',
  '日本語',
  '🦀',
  '\ud800',
  ' ',
  'CON',
  'x'.repeat(255),
  'y'.repeat(256),
  'tmp',
  'locks',
);
const segment = fc.oneof(nasty, fc.string({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 6 }));
const hostileKey = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('', '/', '//', './', '../'),
      fc.array(segment, { minLength: 1, maxLength: 5 }),
      fc.constantFrom('/', '//', '\\'),
    )
    .map(([lead, segs, join]) => lead + segs.join(join)),
  fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/')),
  fc.string({ unit: 'binary', maxLength: 40 }),
);

describe('hostile keys never touch anything outside the root', () => {
  let sandbox = '';
  let cleanup = async () => {};
  let root = '';
  let tier: FsTier;
  const links = (): [string, string][] => [
    [join(sandbox, 'canary'), join(root, 'link')],
    [join(sandbox, 'outside', 'sentinel.txt'), join(root, 'flink')],
    ['../../outside', join(root, 'sub', 'evil')],
  ];
  /** Links planted in the root, pointing out of it. A valid write of exactly 'link' replaces the link itself; plant it again. */
  const plantLinks = async () => {
    for (const [target, at] of links()) {
      const st = await lstat(at).catch(() => undefined);
      if (st?.isSymbolicLink()) continue;
      await rm(at, { recursive: true, force: true });
      await mkdir(join(at, '..'), { recursive: true });
      await symlink(target, at);
    }
  };
  beforeAll(async () => {
    ({ dir: sandbox, cleanup } = await tempDir('hostile'));
    root = join(sandbox, 'root');
    await mkdir(join(sandbox, 'outside', 'deep'), { recursive: true });
    await mkdir(join(sandbox, 'canary'), { recursive: true });
    await writeFile(join(sandbox, 'outside', 'sentinel.txt'), 'do not touch');
    await writeFile(join(sandbox, 'outside', 'deep', 'x'), 'deep sentinel');
    await writeFile(join(sandbox, 'canary', 'secret'), 'canary secret');
    await writeFile(join(sandbox, 'canary', 'x'), 'canary x');
    await mkdir(join(root, 'sub'), { recursive: true });
    await plantLinks();
    tier = new FsTier({ root, fsync: false, maxBytes: 1 << 20 });
    await tier.ready;
  });
  afterAll(async () => {
    await tier?.close();
    await cleanup();
  });

  it('read/readInto/stat/readStream through a planted link is a miss; write and delete refuse it', async () => {
    const before = await treeHash(sandbox, root);
    for (const key of ['link/secret', 'link/x', 'flink', 'sub/evil/sentinel.txt', 'sub/evil/deep/x']) {
      expect(await tier.stat(key)).toBeUndefined();
      expect(await tier.read(key)).toBeUndefined();
      expect(await tier.readInto(key, new Uint8Array(10))).toBeUndefined();
      expect(await tier.readStream(key)).toBeUndefined();
    }
    await expect(tier.write('link/new', new Uint8Array(3))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(tier.write('sub/evil/deep/x', new Uint8Array(3))).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    await tier.delete('link/secret');
    await tier.delete('sub/evil/sentinel.txt');
    const listed: string[] = [];
    for await (const m of tier.list('')) listed.push(m.key);
    expect(listed).toEqual([]);
    for await (const m of tier.list('link/')) listed.push(m.key);
    expect(listed).toEqual([]);
    expect(await treeHash(sandbox, root)).toBe(before);
    // Writing the key of a file link replaces the link itself, never its target.
    await tier.write('flink', new TextEncoder().encode('replaced'));
    expect((await lstat(join(root, 'flink'))).isFile()).toBe(true);
    expect(await readFile(join(sandbox, 'outside', 'sentinel.txt'), 'utf8')).toBe('do not touch');
    await tier.delete('flink');
    await symlink(join(sandbox, 'outside', 'sentinel.txt'), join(root, 'flink'));
    expect(await treeHash(sandbox, root)).toBe(before);
  });

  it('thousands of generated keys on every op: invalid ones fail INVALID_KEY, nothing outside changes', async () => {
    const before = await treeHash(sandbox, root);
    let invalid = 0;
    let valid = 0;
    await fc.assert(
      fc.asyncProperty(hostileKey, fc.uint8Array({ maxLength: 64 }), async (key, bytes) => {
        const bad = keyProblem(key) !== undefined || isReservedKey(key);
        const ops: [string, () => Promise<unknown>][] = [
          ['write', () => tier.write(key, bytes)],
          ['stat', () => tier.stat(key)],
          ['read', () => tier.read(key)],
          ['readInto', () => tier.readInto(key, new Uint8Array(8))],
          ['readStream', async () => (await tier.readStream(key))?.destroy()],
          [
            'list',
            async () => {
              for await (const m of tier.list(`${key}/`)) expect(m.key.startsWith(`${key}/`)).toBe(true);
            },
          ],
          ['delete', () => tier.delete(key)],
        ];
        await plantLinks();
        if (bad) invalid++;
        else valid++;
        for (const [name, op] of ops) {
          try {
            await op();
            if (bad) throw new Error(`${name}(${JSON.stringify(key)}) succeeded on an invalid key`);
          } catch (err) {
            if (!isTierError(err)) throw err;
            if (bad) expect(err.code, `${name}(${JSON.stringify(key)})`).toBe('INVALID_KEY');
            // Valid keys may still be refused (a planted link in the way, a name clash) — never silently.
            else
              expect(
                ['UNAVAILABLE', 'INVALID_KEY'],
                `${name}(${JSON.stringify(key)}): ${err.message}`,
              ).toContain(err.code);
          }
        }
      }),
      { numRuns: 2000 },
    );
    expect(invalid).toBeGreaterThan(500);
    expect(valid).toBeGreaterThan(200);
    expect(await treeHash(sandbox, root)).toBe(before);
    // Nothing was created next to the root either.
    expect((await readdir(sandbox)).sort()).toEqual(['canary', 'outside', 'root']);
  }, 60_000);
});
