/**
 * Serving with the origin down (`staleIfError`): the stack serves cached
 * copies it could not validate; this says so once, and stops every later
 * validation from spending the origin's whole retry budget on a dead endpoint.
 */
import { DelegatingTier, isTierError, type ObjectMeta, type OpOptions, type Tier } from '@tierkit/tier-core';
import { errorInfo, type ItemError } from './util.js';

export interface UnvalidatedNotice {
  /** The origin's tier name. */
  readonly origin: string;
  /** The first key served unvalidated. */
  readonly key: string;
  readonly error: ItemError;
  /** The sentence to show a user. */
  readonly message: string;
}

export function unvalidatedMessage(origin: string, error: ItemError): string {
  return (
    `origin '${origin}' cannot be reached (${error.code}: ${error.message}): serving cached copies ` +
    'without validating them against it (staleIfError); objects that are not cached fail. ' +
    'This is said once.'
  );
}

/** The default notice: one process warning (shown on stderr, silenced by --no-warnings). */
export function emitUnvalidatedWarning(n: UnvalidatedNotice): void {
  process.emitWarning(n.message, { code: 'TIERKIT_UNVALIDATED' });
}

/** Counts copies served unvalidated and tells `notify` of the first one only. */
export class OfflineServing {
  #served = 0;
  #first: UnvalidatedNotice | undefined;
  readonly #notify: (n: UnvalidatedNotice) => void;

  constructor(notify: (n: UnvalidatedNotice) => void) {
    this.#notify = notify;
  }

  /** Reads (and stats) answered from a cache while the origin was unreachable. */
  get served(): number {
    return this.#served;
  }

  /** The notice given, if any. */
  get notice(): UnvalidatedNotice | undefined {
    return this.#first;
  }

  /** A stack warning: a failed validation served on (op `validate`) counts. */
  warned(w: { key: string; tier: string; op: string; error: unknown }): void {
    if (w.op !== 'validate') return;
    this.#served++;
    if (this.#first) return;
    const error = errorInfo(w.error);
    this.#first = { origin: w.tier, key: w.key, error, message: unvalidatedMessage(w.tier, error) };
    this.#notify(this.#first);
  }
}

/**
 * An origin that, once a stat failed because it could not be reached, fails
 * further stats at once with the same error for `quietMs` (default 10 s), then
 * tries again. Validations of a warm cache with the origin down then cost one
 * retry cycle, not one per object. Only used with `staleIfError`.
 */
export class OriginOutage extends DelegatingTier {
  readonly #quietMs: number;
  readonly #clock: () => number;
  #downUntil = 0;
  #error: unknown;

  constructor(inner: Tier, options: { quietMs?: number; clock?: () => number } = {}) {
    super(inner);
    this.#quietMs = options.quietMs ?? 10_000;
    this.#clock = options.clock ?? Date.now;
  }

  override async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    if (this.#error !== undefined && this.#clock() < this.#downUntil) throw this.#error;
    try {
      const m = await this.inner.stat(key, options);
      this.#error = undefined;
      return m;
    } catch (err) {
      // Unreachable (connection refused, timeouts, 5xx after retries): not a bad key or an abort.
      if (isTierError(err, 'UNAVAILABLE') || isTierError(err, 'IO')) {
        this.#error = err;
        this.#downUntil = this.#clock() + this.#quietMs;
      }
      throw err;
    }
  }
}
