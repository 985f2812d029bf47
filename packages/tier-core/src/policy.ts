/**
 * An eviction policy decides, synchronously, which entries to drop; the tier
 * that owns the entries deletes them. A policy never chooses an entry that is
 * pinned or in use (acquired and not yet released).
 */
export interface PolicyEntryInfo {
  readonly key: string;
  readonly size: number;
  /** Milliseconds since the epoch of the last touch. */
  readonly lastUsed: number;
  readonly pinned: boolean;
  readonly inUse: boolean;
}

export interface Policy {
  /** Bytes of all tracked entries. */
  readonly totalBytes: number;
  /** Number of tracked entries. */
  readonly count: number;

  /** Adds an entry or replaces its size; it becomes the most recently used (or takes `lastUsed`). */
  insert(key: string, size: number, lastUsed?: number): void;
  /** Marks an entry used now (or at `now`). Unknown keys are ignored. */
  touch(key: string, now?: number): void;
  /** Forgets an entry. Unknown keys are ignored. */
  remove(key: string): void;
  has(key: string): boolean;
  get(key: string): PolicyEntryInfo | undefined;

  /** An entry in use (being read) is never a victim; calls nest. */
  acquire(key: string): void;
  release(key: string): void;

  pin(key: string): void;
  unpin(key: string): void;

  /**
   * Chooses entries to evict, least valuable first, until at least `bytes` are
   * freed or nothing evictable is left. Does not remove them: the caller does,
   * after deleting their data.
   */
  victims(bytes: number): string[];
  /** Entries not used for longer than `idleMs` (relative to `now`), never pinned or in-use ones. */
  idle(idleMs: number, now?: number): string[];
  /** All entries, least recently used first. */
  entries(): IterableIterator<PolicyEntryInfo>;
}

interface MapEntry {
  size: number;
  lastUsed: number;
  pinned: boolean;
  uses: number;
}

/**
 * A small LRU on a Map (whose iteration order is insertion order, so a touch is
 * delete + set). Good for the memory tier and for tests; `@tierkit/policy-lru`
 * is the compact one for a million entries, with idle purge and durations.
 */
export class MapLruPolicy implements Policy {
  #entries = new Map<string, MapEntry>();
  #bytes = 0;
  readonly #clock: () => number;

  constructor(options: { clock?: () => number } = {}) {
    this.#clock = options.clock ?? Date.now;
  }

  get totalBytes(): number {
    return this.#bytes;
  }
  get count(): number {
    return this.#entries.size;
  }

  insert(key: string, size: number, lastUsed?: number): void {
    const old = this.#entries.get(key);
    if (old) {
      this.#bytes -= old.size;
      this.#entries.delete(key);
    }
    this.#entries.set(key, {
      size,
      lastUsed: lastUsed ?? this.#clock(),
      pinned: old?.pinned ?? false,
      uses: old?.uses ?? 0,
    });
    this.#bytes += size;
  }
  touch(key: string, now?: number): void {
    const e = this.#entries.get(key);
    if (!e) return;
    e.lastUsed = now ?? this.#clock();
    this.#entries.delete(key);
    this.#entries.set(key, e);
  }
  remove(key: string): void {
    const e = this.#entries.get(key);
    if (!e) return;
    this.#bytes -= e.size;
    this.#entries.delete(key);
  }
  has(key: string): boolean {
    return this.#entries.has(key);
  }
  get(key: string): PolicyEntryInfo | undefined {
    const e = this.#entries.get(key);
    return e && info(key, e);
  }
  acquire(key: string): void {
    const e = this.#entries.get(key);
    if (e) e.uses++;
  }
  release(key: string): void {
    const e = this.#entries.get(key);
    if (e && e.uses > 0) e.uses--;
  }
  pin(key: string): void {
    const e = this.#entries.get(key);
    if (e) e.pinned = true;
  }
  unpin(key: string): void {
    const e = this.#entries.get(key);
    if (e) e.pinned = false;
  }
  victims(bytes: number): string[] {
    const out: string[] = [];
    let freed = 0;
    for (const [key, e] of this.#entries) {
      if (freed >= bytes) break;
      if (e.pinned || e.uses > 0) continue;
      out.push(key);
      freed += e.size;
    }
    return out;
  }
  idle(idleMs: number, now?: number): string[] {
    const cutoff = (now ?? this.#clock()) - idleMs;
    const out: string[] = [];
    for (const [key, e] of this.#entries) {
      if (e.lastUsed < cutoff && !e.pinned && e.uses === 0) out.push(key);
    }
    return out;
  }
  *entries(): IterableIterator<PolicyEntryInfo> {
    for (const [key, e] of this.#entries) yield info(key, e);
  }
}

function info(key: string, e: MapEntry): PolicyEntryInfo {
  return { key, size: e.size, lastUsed: e.lastUsed, pinned: e.pinned, inUse: e.uses > 0 };
}
