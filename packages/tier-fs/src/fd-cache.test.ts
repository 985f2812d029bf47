import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isShared, sharedBytes } from '@tierkit/pool';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { tempDir } from './test-utils.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

/** Runs `code` (an ES module body; `root` is defined) in a second node process. */
function inChild(root: string, code: string): void {
  const r = spawnSync(
    process.execPath,
    ['--input-type=module', '-e', `const root = ${JSON.stringify(root)};\n${code}`],
    { encoding: 'utf8', timeout: 20_000, cwd: join(import.meta.dirname, '..') },
  );
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
}

const openFds = () => readdirSync('/proc/self/fd').length;

let base = '';
let cleanup = async () => {};
let n = 0;
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('fdcache'));
});
afterAll(() => cleanup());

describe('open-descriptor cache', () => {
  it('keeps a descriptor after a read and serves later reads through it', async () => {
    const tier = new FsTier({ root: join(base, `r${++n}`), fsync: false });
    await tier.write('kv/a', enc('hello world'));
    expect(dec(await tier.read('kv/a'))).toBe('hello world');
    expect(tier.openDescriptors).toBe(1);
    const before = openFds();
    const t = new Uint8Array(5);
    for (let i = 0; i < 20; i++) expect(await tier.readInto('kv/a', t, { offset: 6 })).toBe(5);
    expect(dec(t)).toBe('world');
    expect(dec(await tier.read('kv/a', { range: { offset: 0, length: 5 } }))).toBe('hello');
    expect(openFds()).toBe(before);
    await tier.close();
    expect(tier.openDescriptors).toBe(0);
  });

  it("this process's writes, deletes and evictions drop the descriptor at once", async () => {
    const tier = new FsTier({ root: join(base, `r${++n}`), fsync: false, maxBytes: 20 });
    await tier.write('a', enc('one'));
    expect(dec(await tier.read('a'))).toBe('one');
    await tier.write('a', enc('two!'));
    expect(tier.openDescriptors).toBe(0);
    expect(dec(await tier.read('a'))).toBe('two!');
    await tier.delete('a');
    expect(tier.openDescriptors).toBe(0);
    expect(await tier.read('a')).toBeUndefined();
    await tier.write('b', enc('0123456789'));
    expect(await tier.read('b')).toBeDefined();
    await tier.write('c', enc('0123456789abcdef')); // evicts b
    expect(await tier.stat('b')).toBeUndefined();
    expect(tier.openDescriptors).toBe(0);
    await tier.close();
  });

  it.each(['inline', 'offload'] as const)(
    'descriptorCheck %s: sees another process replace (tier write), rewrite in place, or delete the file',
    async (descriptorCheck) => {
      const root = join(base, `r${++n}`);
      const tier = new FsTier({ root, fsync: false, descriptorCheck });
      await tier.open();
      expect(tier.descriptorCheck).toBe(descriptorCheck);
      await tier.write('m/x', enc('version-1'));
      expect(dec(await tier.read('m/x'))).toBe('version-1');
      const etag1 = (await tier.stat('m/x'))!.etag;

      // Another process publishes through its own FsTier (rename of a new inode).
      inChild(
        root,
        `import { FsTier } from '@tierkit/tier-fs';
       const t = new FsTier({ root, fsync: false });
       await t.write('m/x', new TextEncoder().encode('version-2, longer'));
       await t.close();`,
      );
      expect(dec(await tier.read('m/x'))).toBe('version-2, longer');
      expect((await tier.stat('m/x'))!.etag).not.toBe(etag1);

      // Another program rewrites the file in place with bytes of the same length.
      inChild(
        root,
        `import { openSync, writeSync, closeSync } from 'node:fs';
       const fd = openSync(root + '/m/x', 'r+');
       writeSync(fd, Buffer.from('VERSION-3'), 0, 9, 0);
       closeSync(fd);`,
      );
      expect(dec(await tier.read('m/x'))).toBe('VERSION-3, longer');

      // Another process removes it: a miss, and the stale descriptor is closed.
      inChild(root, `import { unlinkSync } from 'node:fs'; unlinkSync(root + '/m/x');`);
      expect(await tier.read('m/x')).toBeUndefined();
      expect(tier.openDescriptors).toBe(0);
      await tier.close();
    },
  );

  it.each(['inline', 'offload'] as const)(
    'descriptorCheck %s: ifMatch and ranges are checked against the file the path names now',
    async (descriptorCheck) => {
      const root = join(base, `r${++n}`);
      const tier = new FsTier({ root, fsync: false, descriptorCheck });
      await tier.write('k', enc('short'));
      const etag = (await tier.stat('k'))!.etag;
      expect(dec(await tier.read('k', { ifMatch: etag }))).toBe('short');
      inChild(
        root,
        `import { writeFileSync, renameSync } from 'node:fs';
       writeFileSync(root + '/.tierkit/tmp/x', 'a much longer body');
       renameSync(root + '/.tierkit/tmp/x', root + '/k');`,
      );
      await expect(tier.read('k', { ifMatch: etag })).rejects.toMatchObject({ code: 'CHANGED' });
      // The cached size was 5: a range only the new file has is still served.
      expect(dec(await tier.read('k', { range: { offset: 7, length: 6 } }))).toBe('longer');
      await tier.close();
    },
  );

  it('checks inline on a local disk by default; descriptorCheck none trusts the descriptor, own writes still drop it', async () => {
    const root = join(base, `r${++n}`);
    const local = await new FsTier({ root, fsync: false }).open();
    // The tests' temp dir is on a local filesystem (ext4, tmpfs, overlay …).
    expect(local.descriptorCheck).toBe('inline');
    await local.close();
    await expect(
      async () => new FsTier({ root, descriptorCheck: 'sometimes' as 'none' }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });

    const tier = new FsTier({ root, fsync: false, descriptorCheck: 'none' });
    await tier.write('kv/chunk', enc('chunk-bytes'));
    expect(dec(await tier.read('kv/chunk'))).toBe('chunk-bytes');
    // Content-addressed data never changes under its key; a replacement by another
    // process is not looked for (documented): the descriptor's file is served.
    inChild(root, `import { unlinkSync } from 'node:fs'; unlinkSync(root + '/kv/chunk');`);
    expect(dec(await tier.read('kv/chunk'))).toBe('chunk-bytes');
    // This process's own write or delete is never missed.
    await tier.write('kv/chunk', enc('rewritten'));
    expect(dec(await tier.read('kv/chunk'))).toBe('rewritten');
    await tier.delete('kv/chunk');
    expect(await tier.read('kv/chunk')).toBeUndefined();
    expect(tier.openDescriptors).toBe(0);
    await tier.close();
  });

  it('idle descriptors are closed; openFiles: 0 keeps none', async () => {
    const tier = new FsTier({ root: join(base, `r${++n}`), fsync: false, openFileIdleMs: 100 });
    await tier.write('a', enc('x'));
    await tier.read('a');
    expect(tier.openDescriptors).toBe(1);
    await new Promise((r) => setTimeout(r, 400));
    expect(tier.openDescriptors).toBe(0);
    await tier.close();
    const off = new FsTier({ root: join(base, `r${++n}`), fsync: false, openFiles: 0 });
    await off.write('a', enc('x'));
    expect(dec(await off.read('a'))).toBe('x');
    expect(off.openDescriptors).toBe(0);
    await off.close();
  });

  it('keeps at most openFiles descriptors', async () => {
    const tier = new FsTier({ root: join(base, `r${++n}`), fsync: false, openFiles: 3 });
    for (let i = 0; i < 6; i++) await tier.write(`k${i}`, enc(`v${i}`));
    for (let i = 0; i < 6; i++) expect(dec(await tier.read(`k${i}`))).toBe(`v${i}`);
    expect(tier.openDescriptors).toBe(3);
    await tier.close();
  });
});

describe('worker pool on the read path', () => {
  it('large reads into shared memory go through the pool byte-exact; read() returns shared memory', async () => {
    const tier = new FsTier({
      root: join(base, `r${++n}`),
      fsync: false,
      poolReadThreshold: 256 * 1024,
    });
    const data = randomBytes(3 * 1024 * 1024 + 5);
    await tier.write('big', data);
    const target = sharedBytes(data.byteLength);
    const before = tier.workerPool!.stats.completed;
    expect(await tier.readInto('big', target)).toBe(data.byteLength);
    expect(Buffer.from(target).equals(data)).toBe(true);
    expect(tier.workerPool!.stats.completed).toBeGreaterThan(before);
    const part = await tier.read('big', { range: { offset: 1000, length: 1024 * 1024 } });
    expect(isShared(part!)).toBe(true);
    expect(Buffer.from(part!).equals(data.subarray(1000, 1000 + 1024 * 1024))).toBe(true);
    // Small reads and ordinary memory stay on the direct path.
    const small = await tier.read('big', { range: { offset: 0, length: 100 } });
    expect(isShared(small!)).toBe(false);
    const plain = new Uint8Array(data.byteLength);
    expect(await tier.readInto('big', plain)).toBe(data.byteLength);
    expect(Buffer.from(plain).equals(data)).toBe(true);
    await tier.close();
  });

  it('computeChecksum hashes on the pool and matches node:crypto; pool: false hashes inline', async () => {
    const data = randomBytes(5 * 1024 * 1024);
    for (const pool of [true, false]) {
      const tier = new FsTier({ root: join(base, `r${++n}`), fsync: false, pool });
      await tier.write('w', data);
      const r = await tier.computeChecksum('w');
      expect(r!.checksum.value).toBe(createHash('sha256').update(data).digest('hex'));
      expect(r!.size).toBe(data.byteLength);
      expect(tier.workerPool === undefined).toBe(!pool);
      await tier.close();
    }
  });
});
