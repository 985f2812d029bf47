/**
 * A cache directory copied the way images are built — `cp -a`, `tar c | tar x`
 * (a Dockerfile COPY keeps what these keep: size and mtime, not the inode) —
 * keeps its entries: their recorded origin versions hold once each copy's bytes
 * match the checksum recorded with them. An edit in place is still caught.
 */
import { execFileSync, execSync } from 'node:child_process';
import { statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { tempDir } from './test-utils.js';

let base = '';
let cleanup = async () => {};
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('copies'));
});
afterAll(() => cleanup());

const entries = new Map<string, Uint8Array>([
  ['llama/config.json', new TextEncoder().encode('{"hidden":4096}')],
  ['llama/model.safetensors', Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) % 251)],
  ['llama/tokenizer.json', new TextEncoder().encode('{"vocab":{}}')],
]);
const sourceOf = (data: Uint8Array) => ({ size: data.byteLength, etag: `"v1-${data.byteLength}"` });

/** A cache as `tierkit bake` leaves it: each entry with its origin version and sha256. */
async function bake(root: string, checksums = true): Promise<void> {
  const tier = new FsTier({ root });
  for (const [key, data] of entries) {
    await tier.write(key, data, { source: sourceOf(data) });
    if (checksums) {
      const sum = await tier.computeChecksum(key);
      expect(await tier.setChecksum(key, sum!.checksum, sum!.etag)).toBe(true);
    }
  }
  await tier.close();
}

async function sources(root: string): Promise<Map<string, unknown>> {
  const tier = new FsTier({ root });
  const out = new Map<string, unknown>();
  for (const key of entries.keys()) out.set(key, (await tier.stat(key))?.source);
  await tier.close();
  return out;
}

describe('copied caches', () => {
  it.each([
    ['cp -a', (from: string, to: string) => execFileSync('cp', ['-a', from, to])],
    [
      'tar c | tar x (whole-second mtimes)',
      (from: string, to: string) => {
        execFileSync('mkdir', ['-p', to]);
        execSync(`tar -C '${from}' --format=gnu -cf - . | tar -C '${to}' -xpf -`);
      },
    ],
  ])('%s: every entry keeps its origin version, checked once against its checksum', async (_, copy) => {
    const from = join(base, `bake-${Math.random().toString(36).slice(2)}`);
    const to = `${from}-copy`;
    await bake(from);
    copy(from, to);
    // New inodes: the copy is not the file the sidecar was written for.
    const key = 'llama/model.safetensors';
    expect(statSync(join(to, key)).ino).not.toBe(statSync(join(from, key)).ino);

    const tier = new FsTier({ root: to });
    const before = await tier.entryInfo(key);
    expect(before).toMatchObject({ metadata: 'ok', copied: true, source: sourceOf(entries.get(key)!) });
    for (const [k, data] of entries) {
      expect((await tier.stat(k))?.source).toEqual(sourceOf(data));
      expect(Buffer.from((await tier.read(k))!).equals(Buffer.from(data))).toBe(true);
    }
    // The check rewrote the sidecars for the copies: no longer copies, still ok.
    const after = await tier.entryInfo(key);
    expect(after?.metadata).toBe('ok');
    expect(after?.copied).toBeUndefined();
    await tier.close();
    // A later process finds the adopted sidecars without hashing again.
    expect(await sources(to)).toEqual(new Map([...entries].map(([k, d]) => [k, sourceOf(d)])));
  });

  it('an edit in place after the copy is caught (mtime moved)', async () => {
    const from = join(base, 'edit-from');
    const to = join(base, 'edit-to');
    await bake(from);
    execFileSync('cp', ['-a', from, to]);
    const key = 'llama/config.json';
    execSync(`printf X | dd of='${join(to, key)}' bs=1 seek=3 conv=notrunc status=none`);
    // As an edit made after the image was built: its mtime a few seconds past the bake's.
    const later = new Date(statSync(join(from, key)).mtimeMs + 5_000);
    utimesSync(join(to, key), later, later);
    const tier = new FsTier({ root: to });
    expect((await tier.entryInfo(key))?.metadata).toBe('stale');
    expect((await tier.stat(key))?.source).toBeUndefined();
    expect((await tier.stat('llama/tokenizer.json'))?.source).toBeDefined();
    await tier.close();
  });

  it('an edit that puts size and mtime back is caught by the checksum', async () => {
    const from = join(base, 'sly-from');
    const to = join(base, 'sly-to');
    await bake(from);
    execFileSync('cp', ['-a', from, to]);
    const key = 'llama/model.safetensors';
    const path = join(to, key);
    const st = statSync(path);
    const bad = Buffer.from(entries.get(key)!);
    bad[1000] ^= 0xff;
    writeFileSync(path, bad);
    utimesSync(path, st.atime, st.mtime);
    const tier = new FsTier({ root: to });
    // Size and mtime match: only the bytes can tell.
    expect((await tier.entryInfo(key))?.copied).toBe(true);
    expect((await tier.stat(key))?.source).toBeUndefined();
    expect((await tier.entryInfo(key))?.metadata).toBe('stale');
    await tier.close();
  });

  it('without a recorded checksum a copy is not trusted (size and mtime cannot tell it from a rewrite)', async () => {
    const from = join(base, 'nosum-from');
    const to = join(base, 'nosum-to');
    await bake(from, false);
    execFileSync('cp', ['-a', from, to]);
    const tier = new FsTier({ root: to });
    expect((await tier.entryInfo('llama/config.json'))?.metadata).toBe('stale');
    expect((await tier.stat('llama/config.json'))?.source).toBeUndefined();
    await tier.close();
    // The original, same files, same inodes: still trusted.
    expect((await sources(from)).get('llama/config.json')).toBeDefined();
  });
});
