import { abortError } from '@tierkit/tier-core';

/**
 * A byte semaphore, FIFO so a large request is never starved by small ones.
 * Bounds the bytes of ranges in flight or buffered across all reads of a tier.
 */
export class ByteBudget {
  #free: number;
  readonly #waiters: {
    n: number;
    resolve: () => void;
    reject: (e: unknown) => void;
    signal?: AbortSignal;
  }[] = [];

  constructor(readonly capacity: number) {
    this.#free = capacity;
  }

  get free(): number {
    return this.#free;
  }

  acquire(bytes: number, signal?: AbortSignal): Promise<void> {
    const n = Math.min(bytes, this.capacity);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.#waiters.length === 0 && this.#free >= n) {
      this.#free -= n;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = { n, resolve, reject, signal };
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(abortError(signal));
        this.#drain();
      };
      waiter.resolve = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  release(bytes: number): void {
    this.#free += Math.min(bytes, this.capacity);
    this.#drain();
  }

  #drain(): void {
    while (this.#waiters.length > 0 && this.#free >= this.#waiters[0]!.n) {
      const w = this.#waiters.shift()!;
      this.#free -= w.n;
      w.resolve();
    }
  }
}
