/**
 * The pre-baked image flow as a Dockerfile runs it: `tierkit bake`, then the
 * folder copied the way `COPY` copies it (new inodes; size and mtime kept) —
 * here with `cp -a` and with `tar c | tar x`. The copy starts warm: `ls` shows
 * every entry cached, `warm` fetches nothing, reads serve the copy. An edit in
 * place inside the copy is still caught and fetched again. The baked tree holds
 * only what a reader needs: no use journal, lock or temp file of the baker.
 */
import { execFileSync, execSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, utimesSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createS3Tier } from '@tierkit/tier-s3';
import { type LocalS3, localS3ClientConfig, startLocalS3 } from '@tierkit/tier-s3/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, MiB, sha, tierkit } from './cli-harness.js';

let s3: LocalS3;
let work: string;
let originUrl: string;

const objects: Record<string, Uint8Array> = {
  'llama/config.json': new TextEncoder().encode('{"model_type":"llama"}'),
  'llama/model-00001.safetensors': bytes(3 * MiB + 5, 11),
  'llama/model-00002.safetensors': bytes(MiB, 12),
  'llama/tokenizer.json': bytes(90_000, 13),
};
const keys = Object.keys(objects).sort();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'tierkit-cli-copies-'));
  s3 = await startLocalS3({ buckets: ['models'] });
  const bucket = createS3Tier({ bucket: 'models', ...localS3ClientConfig(s3.endpoint) });
  for (const [k, v] of Object.entries(objects)) await bucket.write(k, v);
  await bucket.close();
  originUrl =
    `s3://models/?endpoint=${encodeURIComponent(s3.endpoint)}&forcePathStyle=true` +
    '&requestChecksumCalculation=WHEN_REQUIRED&responseChecksumValidation=WHEN_REQUIRED';
  const baked = await tierkit([
    'bake',
    '--origin',
    originUrl,
    '--out',
    join(work, 'bake'),
    'llama/',
    '--json',
  ]);
  expect(baked.code, baked.stderr).toBe(0);
}, 60_000);

afterAll(async () => {
  await s3?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

const copies: [string, (from: string, to: string) => void][] = [
  ['cp -a', (from, to) => execFileSync('cp', ['-a', from, to])],
  [
    'tar c | tar x',
    (from, to) => {
      mkdirSync(to);
      execSync(`tar -C '${from}' -cf - . | tar -C '${to}' -xpf -`);
    },
  ],
];

/** Every file under `dir`, relative, sorted. */
const filesUnder = (dir: string): string[] =>
  (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((d) => d.isFile())
    .map((d) => join(d.parentPath, d.name).slice(dir.length + 1))
    .sort();

describe('the baked tree', () => {
  it("holds the objects, their sidecars and baked.json: none of the baker's run-time state", () => {
    const meta = join(work, 'bake', '.tierkit');
    const files = filesUnder(meta);
    const sidecars = files.filter((f) => /^meta\/[0-9a-f]{2}\/[0-9a-f]{64}\.json$/.test(f));
    expect(sidecars).toHaveLength(keys.length);
    // No use journal (uses/), lock or lease (locks/), temp (tmp/) or partial fill of the baking process.
    expect(files.filter((f) => !sidecars.includes(f))).toEqual(['baked.json']);
    for (const dir of ['uses', 'locks', 'tmp', 'partial']) expect(readdirSync(join(meta, dir))).toEqual([]);
  });

  it('a copy (cp -a) opened by a reader starts warm and keeps its own last-use times', async () => {
    const img = join(work, 'img-reader');
    execFileSync('cp', ['-a', join(work, 'bake'), img]);
    const ls = await tierkit(['ls', '--cache', img, '--json']);
    expect(ls.code, ls.stderr).toBe(0);
    const entries = JSON.parse(ls.stdout).entries as { key: string; state: string; lastUsed: number }[];
    expect(entries.map((e) => [e.key, e.state])).toEqual(keys.map((k) => [k, 'cached']));
    // With no journal of the baker, a last use is the file's time as the image holds it.
    for (const e of entries) expect(e.lastUsed).toBe(statSync(join(img, e.key)).mtimeMs);
    const warm = await tierkit(['warm', '--cache', img, '--origin', originUrl, 'llama/', '--json']);
    expect(warm.code, warm.stderr).toBe(0);
    expect(JSON.parse(warm.stdout)).toMatchObject({ fetched: 0, fresh: keys.length, bytesFetched: 0 });
  });
});

describe('a baked cache, copied as an image build copies it', () => {
  it.each(copies)(
    '%s: ls shows every entry cached, warm fetches nothing, reads serve the copy',
    async (how, copy) => {
      const img = join(work, `img-${how.replace(/\W+/g, '-')}`);
      copy(join(work, 'bake'), img);
      const key = 'llama/model-00001.safetensors';
      expect(statSync(join(img, key)).ino).not.toBe(statSync(join(work, 'bake', key)).ino);

      const ls = await tierkit(['ls', '--cache', img, '--json']);
      expect(ls.code, ls.stderr).toBe(0);
      const entries = JSON.parse(ls.stdout).entries as { key: string; state: string }[];
      expect(entries.map((e) => [e.key, e.state])).toEqual(keys.map((k) => [k, 'cached']));

      const warm = await tierkit(['warm', '--cache', img, '--origin', originUrl, 'llama/', '--json']);
      expect(warm.code, warm.stderr).toBe(0);
      expect(JSON.parse(warm.stdout)).toMatchObject({
        fetched: 0,
        refetched: 0,
        fresh: keys.length,
        bytesFetched: 0,
      });

      const copiedIno = statSync(join(img, key)).ino;
      for (const k of keys) {
        const cat = await tierkit(['cat', '--cache', img, '--origin', originUrl, k]);
        expect(cat.code, cat.stderr).toBe(0);
        expect(sha(cat.stdoutBytes)).toBe(sha(objects[k]!));
      }
      // Served from the copy, not replaced by a download: the inode is the copy's.
      expect(statSync(join(img, key)).ino).toBe(copiedIno);
    },
  );

  it('an edit in place inside the copy is caught, and only that object is fetched again', async () => {
    const img = join(work, 'img-edited');
    execFileSync('cp', ['-a', join(work, 'bake'), img]);
    const key = 'llama/model-00002.safetensors';
    const path = join(img, key);
    execSync(`printf Z | dd of='${path}' bs=1 seek=100 conv=notrunc status=none`);
    // As an edit made after the image was built.
    const later = new Date(statSync(join(work, 'bake', key)).mtimeMs + 10_000);
    utimesSync(path, later, later);

    const ls = await tierkit(['ls', '--cache', img, '--json']);
    const state = Object.fromEntries(
      (JSON.parse(ls.stdout).entries as { key: string; state: string }[]).map((e) => [e.key, e.state]),
    );
    expect(state[key]).toBe('modified');

    const warm = await tierkit(['warm', '--cache', img, '--origin', originUrl, 'llama/', '--json']);
    expect(warm.code, warm.stderr).toBe(0);
    expect(JSON.parse(warm.stdout)).toMatchObject({ refetched: 1, bytesFetched: objects[key]!.byteLength });
    expect(sha(await readFile(path))).toBe(sha(objects[key]!));
  });
});
