/** Real stacks for the tests: a memory tier over fs, over gds (POSIX path), over 3fs (POSIX path). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LruPolicy } from '@tierkit/policy-lru';
import { Hf3fsTier } from '@tierkit/tier-3fs';
import {
  createMemoryTier,
  createStack,
  type MemoryTier,
  type StackTier,
  type Tier,
} from '@tierkit/tier-core';
import { FsTier } from '@tierkit/tier-fs';
import { GdsTier } from '@tierkit/tier-gds';

export interface TestStack {
  stack: StackTier;
  memory: MemoryTier;
  policy: LruPolicy;
  lower: Tier;
  /** A new stack (fresh memory tier, a new instance of the lower tier on the same files): a restart. */
  reopen(): Promise<TestStack>;
  cleanup(): Promise<void>;
}

export type LowerKind = 'fs' | 'gds' | '3fs';
export const LOWER_KINDS: readonly LowerKind[] = ['fs', 'gds', '3fs'];

async function makeLower(kind: LowerKind, dir: string): Promise<Tier> {
  switch (kind) {
    case 'fs': {
      const t = new FsTier({ root: join(dir, 'fs'), fsync: false });
      await t.ready;
      return t;
    }
    case 'gds': {
      const t = new GdsTier({ gdsPath: join(dir, 'gds'), useCufile: 'off', fsync: false });
      await t.ready;
      return t;
    }
    case '3fs':
      return new Hf3fsTier({
        mountPoint: dir,
        basePath: `${dir}/kv1,${dir}/kv2`,
        useUsrbio: 'off',
        fsync: false,
      });
  }
}

export async function memoryOver(
  kind: LowerKind,
  memoryBytes = Number.POSITIVE_INFINITY,
): Promise<TestStack> {
  const dir = await mkdtemp(join(tmpdir(), `tierkit-kv-${kind}-`));
  const open = async (): Promise<TestStack> => {
    const policy = new LruPolicy();
    const memory = createMemoryTier({ name: 'memory', maxBytes: memoryBytes, policy });
    const lower = await makeLower(kind, dir);
    // Chunks are named by their tokens and never change: no origin validation.
    const stack = createStack([memory, lower], { validate: 'never' });
    return {
      stack,
      memory,
      policy,
      lower,
      reopen: async () => {
        await stack.close();
        return open();
      },
      cleanup: async () => {
        await stack.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
  return open();
}

/** Deterministic bytes for chunk `i` of request `r`. */
export function chunkBytes(r: number, i: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = (r * 7919 + i * 104_729 + 1) >>> 0;
  for (let j = 0; j < size; j++) {
    x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
    out[j] = x >>> 24;
  }
  return out;
}

export function tokensOf(seed: number, n: number, shared?: readonly number[]): number[] {
  const out = shared ? [...shared] : [];
  let x = seed >>> 0 || 1;
  while (out.length < n) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.push((x >>> 0) % 128_256);
  }
  return out.slice(0, n);
}
