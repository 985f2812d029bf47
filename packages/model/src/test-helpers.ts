/** Fixtures for this package's tests: deterministic tensor bytes and tiers that watch their reads. */
import { createMemoryTier, DelegatingTier, type ReadIntoOptions, type Tier } from '@tierkit/tier-core';
import { assemble, type PlannedFile } from './writers.js';

/** Bytes unique to a tensor name (an xorshift stream seeded by the name). */
export function tensorBytes(name: string, length: number): Uint8Array {
  let s = 2166136261;
  for (let i = 0; i < name.length; i++) s = Math.imul(s ^ name.charCodeAt(i), 16777619);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

export function fileOf(plan: PlannedFile): Uint8Array {
  return assemble(plan, tensorBytes);
}

export async function memoryWith(files: Record<string, Uint8Array>): Promise<Tier> {
  const tier = createMemoryTier();
  for (const [k, v] of Object.entries(files)) await tier.write(k, v);
  return tier;
}

export const same = (a: Uint8Array, b: Uint8Array) =>
  a.byteLength === b.byteLength && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

/** A tier that records each readInto and the bytes in flight, and can fail or stall reads. */
export class WatchedTier extends DelegatingTier {
  readonly reads: { key: string; offset: number; length: number }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  requested = 0;
  failAt?: number;
  gate?: Promise<void>;

  constructor(inner: Tier) {
    super(inner);
  }

  override async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions) {
    const length = options?.length ?? target.byteLength;
    this.reads.push({ key, offset: options?.offset ?? 0, length });
    this.requested += length;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.gate) await this.gate;
      if (this.failAt !== undefined && (options?.offset ?? 0) >= this.failAt) {
        throw new Error(`injected failure at ${options?.offset}`);
      }
      return await super.readInto(key, target, options);
    } finally {
      this.inFlight--;
    }
  }
}
