/**
 * Prometheus metrics (prom-client): hits, misses, bytes by tier, fills,
 * evictions, purges, errors and read latency, plus the cache's size.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import {
  DelegatingTier,
  isTierError,
  type ObjectMeta,
  type OpOptions,
  type ReadIntoOptions,
  type ReadOptions,
  type StackTier,
  type Tier,
  type WriteData,
  type WriteOptions,
} from '@tierkit/tier-core';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PurgeResult } from './purge.js';
import type { OperatorCache } from './util.js';
import type { WarmItemResult } from './warm.js';

export const READ_LATENCY_BUCKETS = [
  0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** A tier that reports its reads, bytes, errors and latency to a `TierkitMetrics`. */
export class InstrumentedTier extends DelegatingTier {
  /** Bytes this tier has served (live: the warmer's byte progress reads it). */
  bytesRead = 0;
  readonly #m: TierkitMetrics;

  constructor(inner: Tier, metrics: TierkitMetrics) {
    super(inner);
    this.#m = metrics;
  }

  async #read<T>(run: () => Promise<T | undefined>, size: (v: T) => number): Promise<T | undefined> {
    const end = this.#m.readLatency.startTimer({ tier: this.name });
    try {
      const v = await run();
      if (v === undefined) this.#m.misses.inc({ tier: this.name });
      else {
        const n = size(v);
        this.bytesRead += n;
        this.#m.hits.inc({ tier: this.name });
        if (n > 0) this.#m.bytes.inc({ tier: this.name }, n);
      }
      end();
      return v;
    } catch (err) {
      this.#m.error(this.name, err);
      throw err;
    }
  }

  override read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return this.#read(
      () => this.inner.read(key, options),
      (b) => b.byteLength,
    );
  }
  override readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    return this.#read(
      () => this.inner.readInto(key, target, options),
      (n) => n,
    );
  }
  override async readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    const s = await this.#read(
      () => this.inner.readStream(key, options),
      () => 0,
    );
    s?.on('data', (c: Uint8Array) => {
      this.bytesRead += c.byteLength;
      this.#m.bytes.inc({ tier: this.name }, c.byteLength);
    });
    return s;
  }
  override async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    try {
      return await this.inner.stat(key, options);
    } catch (err) {
      this.#m.error(this.name, err);
      throw err;
    }
  }
  override async write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    try {
      return await this.inner.write(key, data, options);
    } catch (err) {
      this.#m.error(this.name, err);
      throw err;
    }
  }
}

/** The metrics of one process: its own registry unless one is given. */
export class TierkitMetrics {
  readonly registry: Registry;
  readonly hits: Counter<'tier'>;
  readonly misses: Counter<'tier'>;
  readonly bytes: Counter<'tier'>;
  readonly errors: Counter<'tier' | 'code'>;
  readonly readLatency: Histogram<'tier'>;
  readonly fills: Counter<'result'>;
  readonly fillBytes: Counter;
  readonly purges: Counter<'reason'>;
  readonly evictions: Counter<'tier'>;
  readonly #stacks: StackTier[] = [];
  readonly #caches: OperatorCache[] = [];

  constructor(options: { registry?: Registry; prefix?: string } = {}) {
    const p = options.prefix ?? 'tierkit_';
    const registry = options.registry ?? new Registry();
    this.registry = registry;
    const stacks = this.#stacks;
    const caches = this.#caches;
    this.hits = new Counter({
      name: `${p}hits_total`,
      help: 'Reads served, by the tier that held the object',
      labelNames: ['tier'],
      registers: [registry],
    });
    this.misses = new Counter({
      name: `${p}misses_total`,
      help: 'Reads no tier could serve',
      labelNames: ['tier'],
      registers: [registry],
    });
    this.bytes = new Counter({
      name: `${p}read_bytes_total`,
      help: 'Bytes served, by tier',
      labelNames: ['tier'],
      registers: [registry],
    });
    this.errors = new Counter({
      name: `${p}errors_total`,
      help: 'Failed operations, by tier and error code',
      labelNames: ['tier', 'code'],
      registers: [registry],
    });
    this.readLatency = new Histogram({
      name: `${p}read_duration_seconds`,
      help: 'Read latency, by tier',
      labelNames: ['tier'],
      buckets: READ_LATENCY_BUCKETS,
      registers: [registry],
    });
    this.fills = new Counter({
      name: `${p}fills_total`,
      help: 'Objects warmed into the cache, by result (fetched, refetched, fresh, failed)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.fillBytes = new Counter({
      name: `${p}fill_bytes_total`,
      help: 'Bytes of the objects fetched into the cache by warm',
      registers: [registry],
    });
    this.purges = new Counter({
      name: `${p}purged_entries_total`,
      help: 'Entries dropped by purge, by reason (idle, budget)',
      labelNames: ['reason'],
      registers: [registry],
    });
    // Read from the caches at scrape time: eviction happens inside tier-fs.
    this.evictions = new Counter({
      name: `${p}evictions_total`,
      help: 'Entries evicted from a cache tier (capacity or purge) by this process',
      labelNames: ['tier'],
      registers: [registry],
      collect() {
        this.reset();
        for (const c of caches) this.inc({ tier: c.name }, c.evictions);
      },
    });
    new Counter({
      name: `${p}stack_hits_total`,
      help: 'Reads a stack served, by the tier that held the object',
      labelNames: ['tier'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of stacks) {
          for (const [tier, n] of Object.entries(s.stats().hitsByTier)) this.inc({ tier }, n);
        }
      },
    });
    new Counter({
      name: `${p}stack_misses_total`,
      help: 'Reads a stack could not serve from any tier',
      registers: [registry],
      collect() {
        this.reset();
        for (const s of stacks) this.inc(s.stats().misses);
      },
    });
    new Counter({
      name: `${p}stack_fetched_bytes_total`,
      help: 'Bytes a stack fetched block by block into partial copies',
      registers: [registry],
      collect() {
        this.reset();
        for (const s of stacks) this.inc(s.stats().blockBytesFetched);
      },
    });
    new Gauge({
      name: `${p}cache_bytes`,
      help: 'Bytes of the objects in a cache tier',
      labelNames: ['tier'],
      registers: [registry],
      collect() {
        for (const c of caches) this.set({ tier: c.name }, c.usedBytes);
      },
    });
    new Gauge({
      name: `${p}cache_entries`,
      help: 'Objects in a cache tier',
      labelNames: ['tier'],
      registers: [registry],
      collect() {
        for (const c of caches) this.set({ tier: c.name }, c.count);
      },
    });
    new Gauge({
      name: `${p}cache_pinned_entries`,
      help: 'Pinned objects in a cache tier',
      labelNames: ['tier'],
      registers: [registry],
      collect() {
        for (const c of caches) {
          let n = 0;
          for (const e of c.policy.entries()) if (e.pinned) n++;
          this.set({ tier: c.name }, n);
        }
      },
    });
  }

  /** Wraps `tier` so its reads are counted and timed. */
  instrument(tier: Tier): InstrumentedTier {
    return new InstrumentedTier(tier, this);
  }

  /** Reports a stack's hit/miss/fetch counters at each scrape. */
  trackStack(stack: StackTier): void {
    this.#stacks.push(stack);
  }

  /** Reports a directory cache's size, entries, pins and evictions at each scrape. */
  trackCache(cache: OperatorCache): void {
    this.#caches.push(cache);
  }

  error(tier: string, err: unknown): void {
    this.errors.inc({ tier, code: isTierError(err) ? err.code : 'UNKNOWN' });
  }

  warmed(item: WarmItemResult): void {
    this.fills.inc({ result: item.status });
    if (item.status === 'fetched' || item.status === 'refetched') this.fillBytes.inc(item.size);
  }

  purged(result: PurgeResult): void {
    if (result.idle.length) this.purges.inc({ reason: 'idle' }, result.idle.length);
    if (result.overBudget.length) this.purges.inc({ reason: 'budget' }, result.overBudget.length);
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Serves `/metrics` on `host` (default 127.0.0.1) and `port` (0: any free port). */
  async serve(options: {
    port: number;
    host?: string;
  }): Promise<{ port: number; url: string; close(): Promise<void> }> {
    const host = options.host ?? '127.0.0.1';
    const server: Server = createServer((req, res) => {
      if (req.url !== '/metrics' && req.url !== '/') {
        res.writeHead(404).end('not found: try /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (err) => res.writeHead(500).end(String(err)),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, host, () => resolve());
    });
    server.unref();
    const port = (server.address() as AddressInfo).port;
    return {
      port,
      url: `http://${host}:${port}/metrics`,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }
}
