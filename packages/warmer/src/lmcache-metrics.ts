/**
 * Prometheus metrics of an LMCache GDS directory managed in place, in a
 * TierkitMetrics registry: gauges rescanned at each scrape, counters of what
 * purges actually removed.
 */
import type { LmcacheGdsDirectory } from '@tierkit/tier-gds';
import { Counter, Gauge } from 'prom-client';
import type { TierkitMetrics } from './metrics.js';

/** Registers the directory's metrics (`tierkit_lmcache_gds_*`) in `metrics`' registry. */
export function trackLmcacheDirectory(metrics: TierkitMetrics, dir: LmcacheGdsDirectory): void {
  const registers = [metrics.registry];
  const m = dir.metrics;
  let scanned: Promise<unknown> | undefined;
  // One scan per scrape, shared by both gauges.
  const scan = () => {
    scanned ??= dir.entries().finally(() => {
      scanned = undefined;
    });
    return scanned;
  };
  new Gauge({
    name: 'tierkit_lmcache_gds_bytes',
    help: 'Bytes of data and .metadata files in the LMCache GDS directory.',
    registers,
    async collect() {
      await scan();
      this.set(m.bytes);
    },
  });
  new Gauge({
    name: 'tierkit_lmcache_gds_entries',
    help: 'Entries with a data file in the LMCache GDS directory.',
    registers,
    async collect() {
      await scan();
      this.set(m.entries);
    },
  });
  const counter = (name: string, help: string, value: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(value());
      },
    });
  counter('tierkit_lmcache_gds_evictions_total', 'Entries removed by purges.', () => m.evictedEntries);
  counter('tierkit_lmcache_gds_evicted_bytes_total', 'Bytes unlinked by purges.', () => m.evictedBytes);
  counter('tierkit_lmcache_gds_purge_runs_total', 'Purge runs.', () => m.purgeRuns);
  counter('tierkit_lmcache_gds_purge_errors_total', 'Purge runs that failed.', () => m.purgeErrors);
  counter(
    'tierkit_lmcache_gds_healed_metadata_total',
    '.metadata files written for data files that had none.',
    () => m.healedMetadata,
  );
}
