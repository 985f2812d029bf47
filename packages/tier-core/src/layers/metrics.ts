/**
 * Counts what passes through a tier: hits, misses, bytes read and written,
 * errors by code, and read latency. Counters are plain numbers so reading them
 * costs nothing; exporters (Prometheus, logs) read `snapshot()`.
 */
import type { Readable } from 'node:stream';
import { isTierError } from '../errors.js';
import type {
  ListOptions,
  ObjectMeta,
  OpOptions,
  ReadIntoOptions,
  ReadOptions,
  Tier,
  WriteData,
  WriteOptions,
} from '../tier.js';
import { DelegatingTier } from './delegate.js';

/** Upper bounds (seconds) of the read-latency histogram buckets. */
export const LATENCY_BUCKETS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

export interface TierMetricsSnapshot {
  readonly tier: string;
  readonly hits: number;
  readonly misses: number;
  readonly reads: number;
  readonly bytesRead: number;
  readonly writes: number;
  readonly bytesWritten: number;
  readonly deletes: number;
  readonly errors: Readonly<Record<string, number>>;
  /** Cumulative counts per bucket of LATENCY_BUCKETS, then +Inf. */
  readonly readLatency: {
    readonly buckets: readonly number[];
    readonly count: number;
    readonly sumSeconds: number;
  };
}

export class TierMetrics {
  hits = 0;
  misses = 0;
  reads = 0;
  bytesRead = 0;
  writes = 0;
  bytesWritten = 0;
  deletes = 0;
  readonly errors: Record<string, number> = {};
  readonly #bucketCounts = new Float64Array(LATENCY_BUCKETS.length + 1);
  #latencyCount = 0;
  #latencySum = 0;

  constructor(readonly tier: string) {}

  observeRead(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.#bucketCounts[i]!++;
    this.#latencyCount++;
    this.#latencySum += seconds;
  }

  error(err: unknown): void {
    const code = isTierError(err) ? err.code : 'UNKNOWN';
    this.errors[code] = (this.errors[code] ?? 0) + 1;
  }

  snapshot(): TierMetricsSnapshot {
    let cumulative = 0;
    const buckets = Array.from(this.#bucketCounts, (n) => (cumulative += n));
    return {
      tier: this.tier,
      hits: this.hits,
      misses: this.misses,
      reads: this.reads,
      bytesRead: this.bytesRead,
      writes: this.writes,
      bytesWritten: this.bytesWritten,
      deletes: this.deletes,
      errors: { ...this.errors },
      readLatency: { buckets, count: this.#latencyCount, sumSeconds: this.#latencySum },
    };
  }
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export class MetricsTier extends DelegatingTier {
  readonly metrics: TierMetrics;

  constructor(inner: Tier, metrics?: TierMetrics) {
    super(inner);
    this.metrics = metrics ?? new TierMetrics(inner.name);
  }

  async #timedRead<T>(run: () => Promise<T | undefined>, size: (v: T) => number): Promise<T | undefined> {
    const m = this.metrics;
    const start = process.hrtime.bigint();
    m.reads++;
    try {
      const v = await run();
      if (v === undefined) m.misses++;
      else {
        m.hits++;
        m.bytesRead += size(v);
      }
      m.observeRead(seconds(start));
      return v;
    } catch (err) {
      m.error(err);
      throw err;
    }
  }

  override read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return this.#timedRead(
      () => this.inner.read(key, options),
      (b) => b.byteLength,
    );
  }
  override readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    return this.#timedRead(
      () => this.inner.readInto(key, target, options),
      (n) => n,
    );
  }
  override async readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    const stream = await this.#timedRead(
      () => this.inner.readStream(key, options),
      () => 0,
    );
    // Bytes of a stream are counted as they flow, not when it opens.
    stream?.on('data', (chunk: Uint8Array) => {
      this.metrics.bytesRead += chunk.byteLength;
    });
    stream?.on('error', (err) => this.metrics.error(err));
    return stream;
  }
  override async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    try {
      return await this.inner.stat(key, options);
    } catch (err) {
      this.metrics.error(err);
      throw err;
    }
  }
  override async write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    try {
      const meta = await this.inner.write(key, data, options);
      this.metrics.writes++;
      this.metrics.bytesWritten += meta.size;
      return meta;
    } catch (err) {
      this.metrics.error(err);
      throw err;
    }
  }
  override async delete(key: string, options?: OpOptions): Promise<void> {
    try {
      await this.inner.delete(key, options);
      this.metrics.deletes++;
    } catch (err) {
      this.metrics.error(err);
      throw err;
    }
  }
  override list(prefix?: string, options?: ListOptions): AsyncIterable<ObjectMeta> {
    return this.inner.list(prefix, options);
  }
}

/** A layer that counts hits, misses, bytes, errors and read latency. */
export function withMetrics(metrics?: TierMetrics): (inner: Tier) => MetricsTier {
  return (inner) => new MetricsTier(inner, metrics);
}
