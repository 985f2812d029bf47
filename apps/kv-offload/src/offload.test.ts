import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runOffload } from './offload.js';

describe('kv-offload sample (small)', () => {
  it.each(['fs', 'gds', '3fs'] as const)('offloads and reloads through memory over %s', async (disk) => {
    const dir = await mkdtemp(join(tmpdir(), 'tierkit-kv-offload-test-'));
    const lines: string[] = [];
    try {
      const small = {
        dir,
        disk,
        conversations: 3,
        turns: 3,
        systemTokens: 128,
        turnTokens: 80,
        chunkSize: 64,
        bytesPerToken: 64,
        log: (l: string) => lines.push(l),
      };
      const s = await runOffload({ ...small, memoryBytes: 6 * 64 * 64 }); // room for 6 chunks
      expect(s.requests).toBe(9);
      // Turn 0: only the shared system prompt can hit (after the first conversation).
      // Later turns reload their whole previous turn.
      expect(s.hitChunks).toBeGreaterThan(s.chunks / 3);
      expect(s.verifiedChunks).toBe(s.hitChunks);
      expect(s.diskHits).toBeGreaterThan(0); // the memory tier was too small: some came from disk
      expect(s.diskBytesWritten).toBe(s.bytesStored);
      expect(lines.at(-1)).toMatch(/^summary: 9 requests, chunk hit rate/);
      expect(lines.filter((l) => l.startsWith('conv '))).toHaveLength(9);

      // Run again on the same disk: every earlier prefix is found there.
      const again = await runOffload({ ...small, memoryBytes: 2 ** 20 });
      expect(again.hitChunks).toBeGreaterThan(s.hitChunks);
      expect(again.bytesStored).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
