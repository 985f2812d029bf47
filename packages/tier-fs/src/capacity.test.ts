/**
 * The capacity section is guarded by a lock with a lease. A process that stalls
 * past the lease inside the section (here: an onEvict callback that blocks the
 * event loop, so no renewal runs) must stop before it changes anything more:
 * another process may hold the section by then.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsTier } from './index.js';
import { tempDir } from './test-utils.js';

let base = '';
let cleanup = async () => {};
beforeAll(async () => {
  ({ dir: base, cleanup } = await tempDir('capacity'));
});
afterAll(() => cleanup());

const KiB = 1024;

describe('the capacity section', () => {
  it('a holder that stalled past its lease stops with a retryable UNAVAILABLE, and a retry succeeds', async () => {
    let stall = true;
    const tier = new FsTier({
      root: join(base, 'cache'),
      maxBytes: 64 * KiB,
      lockLeaseMs: 100,
      onEvict: () => {
        if (!stall) return;
        // Blocks the event loop past the lease: no renewal can run meanwhile.
        const until = performance.now() + 400;
        while (performance.now() < until) {
          // busy
        }
      },
    });
    await tier.write('a', new Uint8Array(40 * KiB));
    await tier.write('b', new Uint8Array(20 * KiB));
    const err = await tier.write('c', new Uint8Array(30 * KiB)).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'TierError', code: 'UNAVAILABLE', retryable: true });
    expect(String((err as Error).message)).toMatch(/lease/);
    expect(await tier.stat('c')).toBeUndefined();
    stall = false;
    await tier.write('c', new Uint8Array(30 * KiB));
    expect((await tier.stat('c'))?.size).toBe(30 * KiB);
    expect(tier.usedBytes).toBeLessThanOrEqual(64 * KiB);
    await tier.close();
  });
});
