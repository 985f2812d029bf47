import type { Policy, PolicyEntryInfo } from '@tierkit/tier-core';
import { TierError } from '@tierkit/tier-core';

export interface LruPolicyOptions {
  /** Capacity in bytes used by `overBy()` / `fits()`; unlimited when omitted. */
  maxBytes?: number;
  /** Milliseconds since the epoch; defaults to `Date.now`. Read as monotonic (never goes back). */
  clock?: () => number;
  /** Slots allocated up front (the index doubles when full). Default 1024. */
  initialCapacity?: number;
}

export interface LruPolicyStats {
  readonly count: number;
  readonly totalBytes: number;
  readonly maxBytes: number | undefined;
  readonly pinnedCount: number;
  readonly pinnedBytes: number;
  readonly inUseCount: number;
  /** Bytes of entries that are neither pinned nor in use. */
  readonly evictableBytes: number;
  /** Slots allocated in the typed arrays (grows by doubling, never shrinks). */
  readonly capacity: number;
  /** Bytes held by the typed arrays (excludes the key strings and the key → slot map). */
  readonly typedArrayBytes: number;
}

const HEAD = 0; // slot 0 is the sentinel of a circular list: next[0] is the LRU entry, prev[0] the MRU one
const PINNED = 1;
const MAX_USES = 0xffff; // beyond this, counts continue in a small overflow map
// How far an insert/touch with an older time walks from either end to keep the list
// ordered by lastUsed before it gives up and marks the list for one full sort.
const MAX_WALK = 64;
const DEFAULT_CAPACITY = 1024;

/**
 * A size-aware LRU for up to millions of entries. Entries live in slots of typed
 * arrays forming a doubly linked list ordered by `lastUsed` (ties: the most
 * recently inserted/touched is the more recent); a Map gives key → slot, and freed
 * slots are reused, so every operation except `victims`/`idle`/`entries` is O(1)
 * and no object is allocated per entry besides the Map's own record.
 *
 * Inserts and touches with an explicit time older than the newest entry are put
 * in place when that is within a few steps of either end; otherwise (a bulk load
 * in random time order, say) the list is sorted once, lazily, by the next
 * `victims`, `idle` or `entries` call — O(n log n) once instead of O(n) per insert.
 */
export class LruPolicy implements Policy {
  readonly #index = new Map<string, number>();
  readonly #keys: (string | undefined)[] = [undefined];
  #prev: Int32Array;
  #next: Int32Array;
  #size: Float64Array;
  #time: Float64Array;
  #flags: Uint8Array;
  #uses: Uint16Array;
  #capacity: number;
  #free = HEAD; // head of the free-slot chain, linked through #next; HEAD means empty
  #bytes = 0;
  #lockedBytes = 0; // bytes of entries pinned or in use
  readonly #pinned = new Set<number>();
  #inUse = 0;
  #overflow: Map<number, number> | undefined;
  #unordered = false;
  #maxBytes: number | undefined;
  readonly #clock: () => number;
  #lastTick = Number.NEGATIVE_INFINITY;

  constructor(options: LruPolicyOptions = {}) {
    const cap = options.initialCapacity ?? DEFAULT_CAPACITY;
    if (!Number.isSafeInteger(cap) || cap < 1 || cap > 0x7fffffff) {
      throw new TierError(
        'INVALID_ARGUMENT',
        `initialCapacity must be a positive integer, got ${String(cap)}`,
      );
    }
    this.maxBytes = options.maxBytes;
    this.#clock = options.clock ?? Date.now;
    this.#capacity = cap + 1; // + the sentinel
    this.#prev = new Int32Array(this.#capacity);
    this.#next = new Int32Array(this.#capacity);
    this.#size = new Float64Array(this.#capacity);
    this.#time = new Float64Array(this.#capacity);
    this.#flags = new Uint8Array(this.#capacity);
    this.#uses = new Uint16Array(this.#capacity);
    // The sentinel is older than anything, so backward walks stop on it.
    this.#time[HEAD] = Number.NEGATIVE_INFINITY;
  }

  get totalBytes(): number {
    return this.#bytes;
  }
  get count(): number {
    return this.#index.size;
  }
  get maxBytes(): number | undefined {
    return this.#maxBytes;
  }
  set maxBytes(value: number | undefined) {
    if (value !== undefined && !(typeof value === 'number' && value >= 0 && !Number.isNaN(value))) {
      throw new TierError('INVALID_ARGUMENT', `maxBytes must be a non-negative number, got ${String(value)}`);
    }
    this.#maxBytes = value;
  }

  insert(key: string, size: number, lastUsed?: number): void {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new TierError(
        'INVALID_ARGUMENT',
        `size of '${key}' must be a non-negative integer, got ${String(size)}`,
        {
          key,
        },
      );
    }
    const t = lastUsed === undefined ? this.#tick() : checkTime(lastUsed, 'lastUsed');
    let s = this.#index.get(key);
    if (s === undefined) {
      s = this.#alloc(key);
      this.#index.set(key, s);
    } else {
      // Replacing keeps pin and use counts: a reader may still hold the entry.
      const old = this.#size[s];
      this.#bytes -= old;
      if (this.#locked(s)) this.#lockedBytes += size - old;
      this.#unlink(s);
    }
    this.#size[s] = size;
    this.#bytes += size;
    this.#place(s, t);
  }

  touch(key: string, now?: number): void {
    const s = this.#index.get(key);
    if (s === undefined) return;
    const t = now === undefined ? this.#tick() : checkTime(now, 'now');
    // Already the newest and staying so: nothing to relink (the common hot-read case).
    if (this.#prev[HEAD] === s && t >= this.#time[s]) {
      this.#time[s] = t;
      return;
    }
    this.#unlink(s);
    this.#place(s, t);
  }

  remove(key: string): void {
    const s = this.#index.get(key);
    if (s === undefined) return;
    this.#index.delete(key);
    this.#bytes -= this.#size[s];
    if (this.#locked(s)) this.#lockedBytes -= this.#size[s];
    if (this.#flags[s] & PINNED) this.#pinned.delete(s);
    if (this.#uses[s] !== 0) this.#inUse--;
    this.#overflow?.delete(s);
    this.#flags[s] = 0;
    this.#uses[s] = 0;
    this.#unlink(s);
    this.#keys[s] = undefined;
    this.#next[s] = this.#free;
    this.#free = s;
  }

  has(key: string): boolean {
    return this.#index.has(key);
  }

  get(key: string): PolicyEntryInfo | undefined {
    const s = this.#index.get(key);
    return s === undefined ? undefined : this.#info(s, key);
  }

  acquire(key: string): void {
    const s = this.#index.get(key);
    if (s === undefined) return;
    const u = this.#uses[s];
    if (u === 0) {
      this.#inUse++;
      if (!(this.#flags[s] & PINNED)) this.#lockedBytes += this.#size[s];
    }
    if (u < MAX_USES) {
      this.#uses[s] = u + 1;
    } else {
      this.#overflow ??= new Map();
      this.#overflow.set(s, (this.#overflow.get(s) ?? 0) + 1);
    }
  }

  release(key: string): void {
    const s = this.#index.get(key);
    if (s === undefined) return;
    const u = this.#uses[s];
    if (u === 0) return;
    if (u === MAX_USES && this.#overflow?.has(s)) {
      const extra = this.#overflow.get(s)! - 1;
      if (extra === 0) this.#overflow.delete(s);
      else this.#overflow.set(s, extra);
      return;
    }
    this.#uses[s] = u - 1;
    if (u === 1) {
      this.#inUse--;
      if (!(this.#flags[s] & PINNED)) this.#lockedBytes -= this.#size[s];
    }
  }

  pin(key: string): void {
    const s = this.#index.get(key);
    if (s === undefined || this.#flags[s] & PINNED) return;
    if (this.#uses[s] === 0) this.#lockedBytes += this.#size[s];
    this.#flags[s] |= PINNED;
    this.#pinned.add(s);
  }

  unpin(key: string): void {
    const s = this.#index.get(key);
    if (s === undefined || !(this.#flags[s] & PINNED)) return;
    this.#flags[s] &= ~PINNED;
    this.#pinned.delete(s);
    if (this.#uses[s] === 0) this.#lockedBytes -= this.#size[s];
  }

  victims(bytes: number): string[] {
    const out: string[] = [];
    if (!(bytes > 0)) return out;
    if (this.#unordered) this.#sort();
    const next = this.#next;
    const flags = this.#flags;
    const uses = this.#uses;
    const size = this.#size;
    let freed = 0;
    for (let s = next[HEAD]; s !== HEAD && freed < bytes; s = next[s]) {
      if (flags[s] !== 0 || uses[s] !== 0) continue;
      out.push(this.#keys[s]!);
      freed += size[s];
    }
    return out;
  }

  idle(idleMs: number, now?: number): string[] {
    if (typeof idleMs !== 'number' || Number.isNaN(idleMs) || idleMs < 0) {
      throw new TierError('INVALID_ARGUMENT', `idleMs must be a non-negative number, got ${String(idleMs)}`);
    }
    const cutoff = (now === undefined ? this.#tick() : checkTime(now, 'now')) - idleMs;
    if (this.#unordered) this.#sort();
    const next = this.#next;
    const time = this.#time;
    const out: string[] = [];
    // Ordered by lastUsed, so the first recent-enough entry ends the walk.
    for (let s = next[HEAD]; s !== HEAD && time[s] < cutoff; s = next[s]) {
      if (this.#flags[s] === 0 && this.#uses[s] === 0) out.push(this.#keys[s]!);
    }
    return out;
  }

  /**
   * All entries, least recently used first. Safe to mutate the policy while
   * iterating: it walks a snapshot of the keys taken at the first step, skips
   * entries removed since and reports current values for the rest.
   */
  *entries(): IterableIterator<PolicyEntryInfo> {
    if (this.#unordered) this.#sort();
    const snapshot: string[] = [];
    for (let s = this.#next[HEAD]; s !== HEAD; s = this.#next[s]) snapshot.push(this.#keys[s]!);
    for (const key of snapshot) {
      const s = this.#index.get(key);
      if (s !== undefined) yield this.#info(s, key);
    }
  }

  /** Bytes by which the tracked total (plus `extra` about to be added) exceeds `maxBytes`; 0 without a limit. */
  overBy(extra = 0): number {
    if (this.#maxBytes === undefined) return 0;
    return Math.max(0, this.#bytes + extra - this.#maxBytes);
  }

  /** Whether `bytes` more fit under `maxBytes` without evicting anything. */
  fits(bytes: number): boolean {
    return this.overBy(bytes) === 0;
  }

  /** Keys of pinned entries, in the order they were pinned. */
  pinnedKeys(): string[] {
    const out: string[] = [];
    for (const s of this.#pinned) out.push(this.#keys[s]!);
    return out;
  }

  stats(): LruPolicyStats {
    let pinnedBytes = 0;
    for (const s of this.#pinned) pinnedBytes += this.#size[s];
    return {
      count: this.#index.size,
      totalBytes: this.#bytes,
      maxBytes: this.#maxBytes,
      pinnedCount: this.#pinned.size,
      pinnedBytes,
      inUseCount: this.#inUse,
      evictableBytes: this.#bytes - this.#lockedBytes,
      capacity: this.#capacity - 1,
      typedArrayBytes: this.#capacity * BYTES_PER_SLOT,
    };
  }

  /** Forgets every entry (keeps the allocated capacity). */
  clear(): void {
    for (const s of this.#index.values()) {
      this.#flags[s] = 0;
      this.#uses[s] = 0;
    }
    this.#index.clear();
    this.#keys.length = 1;
    this.#next[HEAD] = HEAD;
    this.#prev[HEAD] = HEAD;
    this.#free = HEAD;
    this.#bytes = 0;
    this.#lockedBytes = 0;
    this.#pinned.clear();
    this.#inUse = 0;
    this.#overflow = undefined;
    this.#unordered = false;
  }

  #tick(): number {
    const t = this.#clock();
    if (!Number.isFinite(t)) {
      throw new TierError('INVALID_ARGUMENT', `the policy clock returned ${String(t)}, not a finite number`);
    }
    // A wall clock stepped back must not reorder the list (or force a resort per touch).
    if (t > this.#lastTick) this.#lastTick = t;
    return this.#lastTick;
  }

  #locked(s: number): boolean {
    return this.#flags[s] !== 0 || this.#uses[s] !== 0;
  }

  #info(s: number, key: string): PolicyEntryInfo {
    return {
      key,
      size: this.#size[s],
      lastUsed: this.#time[s],
      pinned: (this.#flags[s] & PINNED) !== 0,
      inUse: this.#uses[s] !== 0,
    };
  }

  #alloc(key: string): number {
    let s = this.#free;
    if (s !== HEAD) {
      this.#free = this.#next[s];
      this.#keys[s] = key;
      return s;
    }
    s = this.#keys.length;
    if (s === this.#capacity) this.#grow();
    this.#keys.push(key);
    return s;
  }

  #grow(): void {
    const cap = Math.min(this.#capacity * 2, 0x7fffffff);
    if (cap === this.#capacity) throw new TierError('CAPACITY', 'LruPolicy cannot track more entries');
    this.#prev = grown(this.#prev, new Int32Array(cap));
    this.#next = grown(this.#next, new Int32Array(cap));
    this.#size = grown(this.#size, new Float64Array(cap));
    this.#time = grown(this.#time, new Float64Array(cap));
    this.#flags = grown(this.#flags, new Uint8Array(cap));
    this.#uses = grown(this.#uses, new Uint16Array(cap));
    this.#capacity = cap;
  }

  #unlink(s: number): void {
    const p = this.#prev[s];
    const n = this.#next[s];
    this.#next[p] = n;
    this.#prev[n] = p;
  }

  #linkAfter(s: number, p: number): void {
    const n = this.#next[p];
    this.#prev[s] = p;
    this.#next[s] = n;
    this.#next[p] = s;
    this.#prev[n] = s;
  }

  /** Links an unlinked slot after the last entry with lastUsed <= t, keeping the list ordered. */
  #place(s: number, t: number): void {
    const time = this.#time;
    time[s] = t;
    const tail = this.#prev[HEAD];
    if (this.#unordered || time[tail] <= t) {
      this.#linkAfter(s, tail);
      return;
    }
    const head = this.#next[HEAD];
    if (t < time[head]) {
      this.#linkAfter(s, HEAD);
      return;
    }
    // Walk from both ends at once: backward from the newest (a slightly late clock),
    // forward from the oldest (loading old entries). The sentinel's time is -Infinity.
    const prev = this.#prev;
    const next = this.#next;
    let back = prev[tail];
    let fwd = next[head];
    for (let i = 0; i < MAX_WALK; i++) {
      if (time[back] <= t) {
        this.#linkAfter(s, back);
        return;
      }
      back = prev[back];
      if (time[fwd] > t) {
        this.#linkAfter(s, prev[fwd]);
        return;
      }
      fwd = next[fwd];
    }
    this.#linkAfter(s, tail);
    this.#unordered = true;
  }

  /** Stable sort of the list by lastUsed (list order breaks ties), then relink. */
  #sort(): void {
    const n = this.#index.size;
    const order = new Int32Array(n);
    const rank = new Int32Array(this.#capacity);
    const next = this.#next;
    for (let i = 0, s = next[HEAD]; i < n; i++, s = next[s]) {
      order[i] = s;
      rank[s] = i;
    }
    const time = this.#time;
    order.sort((a, b) => time[a] - time[b] || rank[a] - rank[b]);
    const prev = this.#prev;
    let p = HEAD;
    for (let i = 0; i < n; i++) {
      const s = order[i];
      next[p] = s;
      prev[s] = p;
      p = s;
    }
    next[p] = HEAD;
    prev[HEAD] = p;
    this.#unordered = false;
  }
}

/** Int32 prev + next, Float64 size + time, Uint8 flags, Uint16 uses. */
const BYTES_PER_SLOT = 4 + 4 + 8 + 8 + 1 + 2;

function grown<T extends Int32Array | Float64Array | Uint8Array | Uint16Array>(old: T, fresh: T): T {
  fresh.set(old as never);
  return fresh;
}

function checkTime(t: number, what: string): number {
  if (typeof t !== 'number' || !Number.isFinite(t)) {
    throw new TierError(
      'INVALID_ARGUMENT',
      `${what} must be a finite number of milliseconds, got ${String(t)}`,
    );
  }
  return t;
}
