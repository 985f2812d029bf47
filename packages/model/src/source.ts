/**
 * Ranged reads of one file's header region through a tier, never past a
 * budget: a hostile length is refused before anything of that size is
 * allocated or fetched.
 */
import { type Tier, TierError } from '@tierkit/tier-core';
import { formatError } from './errors.js';
import type { StatsCounter } from './stats.js';

export interface SourceOptions {
  readonly signal?: AbortSignal;
  readonly stats: StatsCounter;
}

/** Reads `length` bytes at `offset` into a fresh buffer; a short read is `TRUNCATED`. */
export async function readRange(
  tier: Tier,
  key: string,
  offset: number,
  length: number,
  options: SourceOptions,
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  if (length === 0) return out;
  const n = await tier.readInto(key, out, { offset, length, signal: options.signal });
  if (n === undefined) {
    throw new TierError('NOT_FOUND', `${key}: vanished while its header was read`, { key, retryable: false });
  }
  options.stats.read(key, n);
  if (n !== length) {
    throw formatError('TRUNCATED', key, `read ${n} of ${length} bytes at ${offset}`, { offset, length, n });
  }
  return out;
}

/**
 * A growing window over the start of a file, for formats whose header length
 * is only known by parsing it (GGUF). Reads double in size, capped by the
 * file size and `maxBytes`.
 */
export class HeaderWindow {
  #buf: Uint8Array;
  #view: DataView;
  constructor(
    private readonly tier: Tier,
    readonly key: string,
    readonly size: number,
    readonly maxBytes: number,
    first: Uint8Array,
    private readonly options: SourceOptions,
  ) {
    this.#buf = first;
    this.#view = new DataView(first.buffer, first.byteOffset, first.byteLength);
  }

  get loaded(): number {
    return this.#buf.byteLength;
  }

  get bytes(): Uint8Array {
    return this.#buf;
  }

  get view(): DataView {
    return this.#view;
  }

  /** Makes bytes [0, end) available. */
  async ensure(end: number): Promise<void> {
    if (end <= this.#buf.byteLength) return;
    if (end > this.size) {
      throw formatError('TRUNCATED', this.key, `the header runs past the end of the ${this.size}-byte file`, {
        end,
        size: this.size,
      });
    }
    if (end > this.maxBytes) {
      throw formatError(
        'HEADER_TOO_LARGE',
        this.key,
        `the header needs more than maxHeaderBytes (${this.maxBytes}) bytes`,
        { end, maxBytes: this.maxBytes },
      );
    }
    const target = Math.min(this.size, this.maxBytes, Math.max(end, this.#buf.byteLength * 2));
    const more = await readRange(
      this.tier,
      this.key,
      this.#buf.byteLength,
      target - this.#buf.byteLength,
      this.options,
    );
    const next = new Uint8Array(target);
    next.set(this.#buf);
    next.set(more, this.#buf.byteLength);
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
}
