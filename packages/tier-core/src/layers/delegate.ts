import type { Readable } from 'node:stream';
import type {
  ListOptions,
  ObjectMeta,
  OpOptions,
  ReadIntoOptions,
  ReadOptions,
  Tier,
  TierCapability,
  WriteData,
  WriteOptions,
} from '../tier.js';
import { TIER_SPEC } from '../tier.js';

/**
 * Forwards every operation to an inner tier. Layers extend it and override
 * only the operations they change.
 */
export class DelegatingTier implements Tier {
  readonly spec = TIER_SPEC;
  readonly name: string;
  readonly capability: TierCapability;
  protected readonly inner: Tier;

  constructor(inner: Tier, name?: string) {
    this.inner = inner;
    this.name = name ?? inner.name;
    this.capability = inner.capability;
  }

  stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    return this.inner.stat(key, options);
  }
  read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return this.inner.read(key, options);
  }
  readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    return this.inner.readInto(key, target, options);
  }
  readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    return this.inner.readStream(key, options);
  }
  write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    return this.inner.write(key, data, options);
  }
  delete(key: string, options?: OpOptions): Promise<void> {
    return this.inner.delete(key, options);
  }
  list(prefix?: string, options?: ListOptions): AsyncIterable<ObjectMeta> {
    return this.inner.list(prefix, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
