import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeObject, verifyObject } from '../test-fixtures/content.mjs';
import { FsTier } from './index.js';
import { filesUnder, runFixture, tempDir } from './test-utils.js';

// The children import ../dist: `npm run build` first (turbo's test task depends on build).
describe('SIGKILL mid-write', () => {
  let root = '';
  let cleanup = async () => {};
  beforeAll(async () => {
    ({ dir: root, cleanup } = await tempDir('crash'));
  });
  afterAll(() => cleanup());

  it('never serves a partial object; temp files are cleaned at open; the cache stays usable', async () => {
    let leftoverTemps = 0;
    let served = 0;
    for (let round = 1; round <= 4; round++) {
      const child = runFixture('sigkill-writer.mjs', [root, String(round)]);
      if (round === 1) {
        // Certainly mid-write: the streamed write has its first chunk in the temp file.
        await child.waitFor(/^mid obj\/k\d+ 1\.\d+$/);
      } else {
        // At a random moment shortly after a write started: mid-write, mid-fsync,
        // mid-publish, or between writes.
        const writes = 1 + Math.floor(Math.random() * 6);
        await child.waitFor(new RegExp(`^writing obj/k${(writes - 1) % 12} ${round}\\.${writes - 1}$`));
        await new Promise((r) => setTimeout(r, Math.random() * 40));
      }
      child.proc.kill('SIGKILL');
      const { signal, stderr } = await child.exited;
      expect(signal, stderr).toBe('SIGKILL');
      leftoverTemps += (await readdir(join(root, '.tierkit', 'tmp'))).length;

      const tier = new FsTier({ root });
      await tier.ready;
      expect(await readdir(join(root, '.tierkit', 'tmp'))).toEqual([]);
      const listed: string[] = [];
      for await (const meta of tier.list('')) {
        listed.push(meta.key);
        const bytes = await tier.read(meta.key);
        const v = verifyObject(bytes!, meta.key);
        expect(v.ok, `${meta.key}: ${v.ok ? '' : v.reason}`).toBe(true);
        expect(meta.size).toBe(bytes!.byteLength);
        // Source metadata, when present, belongs to exactly the bytes on disk.
        if (meta.source) expect(meta.source.etag).toBe(`"v${v.version}"`);
        served++;
      }
      // Nothing but complete objects is visible on disk either (no stray files outside .tierkit).
      expect((await filesUnder(root)).sort()).toEqual(listed);
      const fresh = makeObject('after/crash', round, 100_000);
      await tier.write('after/crash', fresh);
      expect(verifyObject((await tier.read('after/crash'))!, 'after/crash').ok).toBe(true);
      await tier.close();
    }
    expect(served).toBeGreaterThan(0);
    // The first kill landed mid-write (a temp file was left behind and then cleaned at open).
    expect(leftoverTemps).toBeGreaterThan(0);
  }, 60_000);
});
