/**
 * Block-granular read-through: fills a partial copy in a BlockCache tier from
 * a source tier with ranged reads, fetching each block once — once in this
 * process (one promise per block) and once across processes (the partial's
 * claims) — and only the blocks a reader needs.
 */
import { Readable } from 'node:stream';
import { TierError, throwIfAborted } from './errors.js';
import { sleep } from './layers/retry.js';
import type { PartialEntry, Tier } from './tier.js';

export interface BlockFillConfig {
  /** Blocks fetched at once for one object. */
  readonly concurrency: number;
  /** How often to look for a block another process is fetching (ms). */
  readonly pollMs: number;
}

/** A counting semaphore: at most `n` holders at once. */
class Slots {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  async take(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }
  give(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

export class BlockFill {
  readonly entry: PartialEntry;
  readonly #source: Tier;
  readonly #etag: string | undefined;
  readonly #config: BlockFillConfig;
  readonly #slots: Slots;
  readonly #inflight = new Map<number, Promise<void>>();
  /** Block buffers reused across fetches: a fill of many blocks allocates `concurrency` of them, not one per block. */
  readonly #pool: Uint8Array[] = [];
  /** Bytes fetched from the source by this fill. */
  fetchedBytes = 0;
  #published: Promise<unknown> | undefined;

  constructor(entry: PartialEntry, source: Tier, etag: string | undefined, config: BlockFillConfig) {
    this.entry = entry;
    this.#source = source;
    this.#etag = etag;
    this.#config = config;
    this.#slots = new Slots(config.concurrency);
  }

  get complete(): boolean {
    for (let b = 0; b < this.entry.blockCount; b++) if (!this.entry.has(b)) return false;
    return true;
  }

  /** The blocks covering `length` bytes at `offset` (none for an empty range). */
  blocksOf(offset: number, length: number): [first: number, last: number] {
    if (length === 0) return [0, -1];
    const bs = this.entry.blockSize;
    return [Math.floor(offset / bs), Math.floor((offset + length - 1) / bs)];
  }

  /** Makes blocks `first`..`last` present, fetching the missing ones in parallel. */
  async ensure(first: number, last: number, signal?: AbortSignal): Promise<void> {
    const pending: Promise<void>[] = [];
    for (let b = first; b <= last; b++) {
      if (!this.entry.has(b)) pending.push(this.block(b, signal));
    }
    if (pending.length > 0) await Promise.all(pending);
  }

  /** Makes one block present; concurrent callers share the work. */
  block(b: number, signal?: AbortSignal): Promise<void> {
    if (this.entry.has(b)) return Promise.resolve();
    let p = this.#inflight.get(b);
    if (!p) {
      // Not tied to one caller's signal: other readers may wait on the same block.
      p = this.#fetch(b).finally(() => this.#inflight.delete(b));
      this.#inflight.set(b, p);
    }
    if (!signal) return p;
    throwIfAborted(signal);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(new TierError('ABORTED', 'read aborted', { key: this.entry.key }));
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /** Waits until no block of this fill is being fetched (before the entry is closed). */
  async settle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight.values()]);
  }

  /** Publishes the object once every block is present (once per fill). */
  publish(): Promise<unknown> {
    this.#published ??= this.entry.publish();
    return this.#published;
  }

  /** A stream of `length` bytes at `offset`, each block handed on as soon as it is present. */
  stream(offset: number, length: number, signal?: AbortSignal, beforeEnd?: () => Promise<void>): Readable {
    const [first, last] = this.blocksOf(offset, length);
    const bs = this.entry.blockSize;
    let next = first;
    // Keep a window of blocks in flight ahead of the reader.
    const ahead = (from: number) => {
      for (let b = from; b <= Math.min(last, from + this.#config.concurrency - 1); b++) {
        this.block(b, signal).catch(() => undefined);
      }
    };
    const readable: Readable = new Readable({
      highWaterMark: 2,
      read: () => {
        if (next > last) return;
        const b = next++;
        ahead(b);
        this.block(b, signal)
          .then(async () => {
            const start = Math.max(offset, b * bs);
            const end = Math.min(offset + length, (b + 1) * bs);
            const out = Buffer.allocUnsafe(end - start);
            await this.entry.readInto(out, start);
            return out;
          })
          .then(
            async (chunk) => {
              readable.push(chunk);
              if (b === last) {
                await beforeEnd?.();
                readable.push(null);
              }
            },
            (err) => readable.destroy(err),
          );
      },
    });
    if (first > last) {
      void (beforeEnd?.() ?? Promise.resolve()).finally(() => readable.push(null));
    }
    return readable;
  }

  async #fetch(b: number): Promise<void> {
    const entry = this.entry;
    for (;;) {
      if (entry.has(b)) return;
      if (await entry.claim(b)) {
        try {
          await entry.refresh();
          if (entry.has(b)) return;
          await this.#slots.take();
          try {
            await this.#copy(b);
          } finally {
            this.#slots.give();
          }
        } finally {
          await entry.release(b);
        }
        return;
      }
      // Another process is fetching it: wait for it to land (or for its claim to go stale).
      await sleep(this.#config.pollMs);
      await entry.refresh();
    }
  }

  async #copy(b: number): Promise<void> {
    const entry = this.entry;
    const offset = b * entry.blockSize;
    const length = Math.min(entry.blockSize, entry.size - offset);
    const buffer = this.#pool.pop() ?? Buffer.allocUnsafe(entry.blockSize);
    try {
      await this.#copyInto(b, buffer.subarray(0, length), offset);
    } finally {
      this.#pool.push(buffer);
    }
  }

  async #copyInto(b: number, bytes: Uint8Array, offset: number): Promise<void> {
    const entry = this.entry;
    const length = bytes.byteLength;
    const n = await this.#source.readInto(entry.key, bytes, { offset, length, ifMatch: this.#etag });
    if (n === undefined) {
      throw new TierError('CHANGED', `'${entry.key}' disappeared from '${this.#source.name}' during a fill`, {
        key: entry.key,
        tier: this.#source.name,
        retryable: false,
      });
    }
    if (n !== length) {
      throw new TierError('INTEGRITY', `block ${b} of '${entry.key}': got ${n} bytes, expected ${length}`, {
        key: entry.key,
        tier: this.#source.name,
        retryable: true,
      });
    }
    await entry.writeBlock(b, bytes);
    this.fetchedBytes += length;
  }
}
