/**
 * Concurrent identical reads (same key and range) share one call to the inner
 * tier. A shared call is cancelled only when every caller waiting on it has
 * aborted; each caller's own signal rejects only that caller. A write or delete
 * of a key detaches its in-flight reads, so a read that starts after a write
 * never joins a read that started before it.
 */
import { raceAbort } from '../bytes.js';
import { throwIfAborted } from '../errors.js';
import { assertKey } from '../keys.js';
import type {
  ObjectMeta,
  OpOptions,
  ReadIntoOptions,
  ReadOptions,
  Tier,
  WriteData,
  WriteOptions,
} from '../tier.js';
import { DelegatingTier } from './delegate.js';

interface Flight<T> {
  readonly promise: Promise<T>;
  readonly controller: AbortController;
  waiting: number;
}

class SingleFlightTier extends DelegatingTier {
  readonly #flights = new Map<string, Flight<unknown>>();
  /** Calls saved by sharing; for tests and metrics. */
  shared = 0;

  override async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    return this.#join(`s\0${key}`, key, options?.signal, (signal) => this.inner.stat(key, { signal }));
  }

  override async read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    const r = options?.range;
    const ifMatch = options?.ifMatch;
    // Only callers that check the bytes themselves share a read that skips the tier's own check.
    const callerVerifies = options?.callerVerifies === true;
    const id = `r\0${key}\0${r?.offset ?? ''}\0${r?.length ?? ''}\0${ifMatch ?? ''}\0${callerVerifies}`;
    let leader = false;
    const bytes = await this.#join(id, key, options?.signal, (signal) => {
      leader = true;
      return this.inner.read(key, { range: r, ifMatch, callerVerifies, signal });
    });
    // Callers own what they are given: the leader keeps the original, others get copies.
    return bytes === undefined || leader ? bytes : bytes.slice();
  }

  override async readInto(
    key: string,
    target: Uint8Array,
    options?: ReadIntoOptions,
  ): Promise<number | undefined> {
    const offset = options?.offset ?? 0;
    const length = options?.length ?? target.byteLength;
    const ifMatch = options?.ifMatch;
    const callerVerifies = options?.callerVerifies === true;
    const id = `i\0${key}\0${offset}\0${length}\0${ifMatch ?? ''}\0${callerVerifies}`;
    let leader = false;
    const result = await this.#join(id, key, options?.signal, async (signal, waiting) => {
      leader = true;
      const n = await this.inner.readInto(key, target, {
        offset,
        length: options?.length,
        ifMatch,
        callerVerifies,
        signal,
      });
      // Joiners copy from a snapshot: the leader may reuse its buffer as soon as it resumes.
      return { n, source: waiting() > 1 && n !== undefined ? target.slice(0, n) : target };
    });
    if (result.n === undefined) return undefined;
    if (!leader) target.set(result.source.subarray(0, result.n));
    return result.n;
  }

  override write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    this.#detach(key);
    return this.inner.write(key, data, options).finally(() => this.#detach(key));
  }

  override delete(key: string, options?: OpOptions): Promise<void> {
    this.#detach(key);
    return this.inner.delete(key, options).finally(() => this.#detach(key));
  }

  #detach(key: string): void {
    for (const id of this.#flights.keys()) {
      if (id.slice(2).startsWith(`${key}\0`) || id.slice(2) === key) this.#flights.delete(id);
    }
  }

  #join<T>(
    id: string,
    key: string,
    signal: AbortSignal | undefined,
    start: (s: AbortSignal, waiting: () => number) => Promise<T>,
  ): Promise<T> {
    assertKey(key, this.name);
    throwIfAborted(signal, key);
    let flight = this.#flights.get(id) as Flight<T> | undefined;
    if (flight) {
      this.shared++;
    } else {
      const controller = new AbortController();
      const holder: { flight?: Flight<T> } = {};
      // Leave the map in the same step the call settles, so no caller joins a finished read.
      const done = () => {
        if (this.#flights.get(id) === holder.flight) this.#flights.delete(id);
      };
      const promise = start(controller.signal, () => holder.flight?.waiting ?? 1).then(
        (v) => {
          done();
          return v;
        },
        (e) => {
          done();
          throw e;
        },
      );
      flight = { promise, controller, waiting: 0 };
      holder.flight = flight;
      this.#flights.set(id, flight);
    }
    const f = flight;
    f.waiting++;
    const mine = raceAbort(f.promise, signal, key);
    if (signal) {
      signal.addEventListener(
        'abort',
        () => {
          if (--f.waiting === 0) f.controller.abort(signal.reason);
        },
        { once: true },
      );
    }
    return mine;
  }
}

/** A layer that lets concurrent identical reads share one inner read. */
export function withSingleFlight(): (inner: Tier) => Tier & { readonly shared: number } {
  return (inner) => new SingleFlightTier(inner);
}
