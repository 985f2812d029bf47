/**
 * Feeds a fill's blocks, in object order, into its digest session while they
 * arrive out of order from parallel requests: the block that extends the
 * contiguous prefix goes at once (with any held blocks after it); a block
 * ahead of the prefix is held as a copy, up to HOLD_BYTES. A block not held
 * (over the budget, fetched by another process, present from an earlier run)
 * is read back from the partial copy when the prefix reaches it — the only
 * case in which a fill reads its own bytes again.
 */
import type { DigestSession } from './digest-worker.js';
import type { PartialEntry } from './tier.js';

/** Copies of out-of-order blocks kept for the digest, per fill. */
const HOLD_BYTES = 128 * 1024 * 1024;
/** Bytes handed to the digest thread and not yet digested before a fill's fetches wait for it. */
const MAX_BACKLOG = 64 * 1024 * 1024;

export class DigestFeed {
  readonly session: DigestSession;
  readonly #entry: PartialEntry;
  /** Whether this fill is fetching block `b` now (its bytes will be offered). */
  readonly #fetching: (b: number) => boolean;
  #next = 0;
  readonly #held = new Map<number, Uint8Array>();
  #heldBytes = 0;
  #catchingUp: Promise<void> | undefined;
  #buffer: Uint8Array | undefined;
  /** Bytes read back from the partial copy for the digest. */
  readBackBytes = 0;

  constructor(session: DigestSession, entry: PartialEntry, fetching: (b: number) => boolean) {
    this.session = session;
    this.#entry = entry;
    this.#fetching = fetching;
  }

  /** Block `b`'s bytes, just stored. Copies what it keeps: the caller may reuse `bytes` at once. */
  offer(b: number, bytes: Uint8Array): void {
    if (b < this.#next || this.#held.has(b)) return;
    if (b === this.#next) {
      this.session.update(bytes);
      this.#next++;
      this.#drainHeld();
    } else if (this.#heldBytes + bytes.byteLength <= HOLD_BYTES) {
      this.#held.set(b, new Uint8Array(bytes)); // its own memory: moved to the digest thread later
      this.#heldBytes += bytes.byteLength;
    }
    this.#kick();
  }

  /** Waits while the digest thread is far behind (backpressure on the fill's fetches). */
  room(): Promise<void> {
    return this.session.drain(MAX_BACKLOG);
  }

  /** With every block present: feeds the rest (reading back what is not held) and returns the digests. */
  async finish(): Promise<string[]> {
    await this.#catchingUp;
    const count = this.#entry.blockCount;
    while (this.#next < count) {
      const b = this.#next;
      const held = this.#held.get(b);
      if (held) {
        this.#held.delete(b);
        this.#heldBytes -= held.byteLength;
        this.session.update(held, true);
      } else {
        this.session.update(await this.#readBack(b));
      }
      this.#next++;
      await this.room();
    }
    return this.session.finish();
  }

  /** Waits for a read-back in progress (before the entry closes). */
  async idle(): Promise<void> {
    await this.#catchingUp;
  }

  drop(): void {
    this.#held.clear();
    this.#heldBytes = 0;
    this.session.drop();
  }

  #drainHeld(): void {
    for (let held = this.#held.get(this.#next); held; held = this.#held.get(this.#next)) {
      this.#held.delete(this.#next);
      this.#heldBytes -= held.byteLength;
      this.session.update(held, true);
      this.#next++;
    }
  }

  /** A present block this fill will not offer sits at the prefix: read it back (one loop at a time). */
  #kick(): void {
    if (this.#catchingUp || !this.#readable(this.#next)) return;
    this.#catchingUp = this.#catchUp()
      .catch(() => undefined) // finish() reads it back again, and reports a failure there
      .finally(() => {
        this.#catchingUp = undefined;
      });
  }

  #readable(b: number): boolean {
    return (
      b < this.#entry.blockCount &&
      !this.#held.has(b) &&
      !this.#fetching(b) &&
      this.#entry.has(b) &&
      this.session.backlog <= MAX_BACKLOG
    );
  }

  async #catchUp(): Promise<void> {
    while (this.#readable(this.#next)) {
      const b = this.#next;
      const bytes = await this.#readBack(b);
      if (b !== this.#next) continue; // offered meanwhile
      this.session.update(bytes);
      this.#next++;
      this.#drainHeld();
    }
  }

  async #readBack(b: number): Promise<Uint8Array> {
    const bs = this.#entry.blockSize;
    const length = Math.min(bs, this.#entry.size - b * bs);
    this.#buffer ??= Buffer.allocUnsafe(bs);
    const out = this.#buffer.subarray(0, length);
    await this.#entry.readInto(out, b * bs);
    this.readBackBytes += length;
    return out;
  }
}
