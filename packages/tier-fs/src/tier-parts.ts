/**
 * The parts of one FsTier that its modules (publishing, eviction, pins and
 * purges, the open-time scan) work on: built once by the tier, read through
 * getters where a part is made at open.
 */
import type { Policy, SourceMeta } from '@tierkit/tier-core';
import type { Budget } from './capacity.js';
import type { DescriptorCache } from './fd-cache.js';
import type { UseJournal } from './journal.js';
import type { Resolved } from './options.js';
import type { KnownBlocks } from './partial.js';
import type { RootPaths } from './paths.js';
import type { Sidecar } from './sidecar.js';

export interface TierParts {
  readonly name: string;
  readonly o: Resolved;
  readonly policy: Policy;
  readonly clock: () => number;
  /** Keys pinned, as this process knows them. */
  readonly pins: Set<string>;
  /** The origin version of each file this process looked at, by key (file identity → source). */
  readonly sources: Map<string, { id: string; source?: SourceMeta }>;
  /** Partial copies' blocks this process wrote or checked, by partial directory. */
  readonly verifiedBlocks: Map<string, KnownBlocks>;
  readonly budget: Budget;
  readonly paths: RootPaths;
  readonly journal: UseJournal | undefined;
  readonly fds: DescriptorCache | undefined;
  /** Entries removed by eviction in this process, and their bytes. */
  readonly evicted: { count: number; bytes: number };
  readonly onEvict?: (key: string, size: number) => void;
  tmpPath(kind: string): string;
  pinPath(key: string): string;
  sidecarPath(key: string): string;
  readSidecar(key: string): Promise<Sidecar | undefined>;
  /** Drops everything this process knows of `key` (index, descriptors, source, journal). */
  forget(key: string): void;
}
