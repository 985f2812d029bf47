/**
 * Retries operations that fail with a retryable TierError, with exponential
 * backoff and full jitter. Writes are retried only when their data can be
 * replayed (a byte array, not a stream).
 */
import type { Readable } from 'node:stream';
import { abortError, isTierError, TierError, throwIfAborted } from '../errors.js';
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

export interface RetryOptions {
  /** Total attempts including the first (default 4). */
  readonly attempts?: number;
  /** First backoff in ms (default 50); doubles each attempt. */
  readonly baseDelayMs?: number;
  /** Longest backoff in ms (default 2000). */
  readonly maxDelayMs?: number;
  /** Decides whether an error is worth another attempt (default: `err.retryable`). */
  readonly retryOn?: (err: unknown) => boolean;
  /** Called before each retry; for logs and metrics. */
  readonly onRetry?: (info: {
    op: string;
    key?: string;
    attempt: number;
    delayMs: number;
    error: unknown;
  }) => void;
  /** Random source in [0, 1), replaceable for tests. */
  readonly random?: () => number;
}

interface ResolvedRetry {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  retryOn: (err: unknown) => boolean;
  onRetry?: RetryOptions['onRetry'];
  random: () => number;
}

export function resolveRetryOptions(options: RetryOptions = {}): ResolvedRetry {
  const attempts = options.attempts ?? 4;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new TierError('INVALID_ARGUMENT', `retry attempts must be an integer ≥ 1, got ${attempts}`, {
      retryable: false,
    });
  }
  return {
    attempts,
    baseDelayMs: options.baseDelayMs ?? 50,
    maxDelayMs: options.maxDelayMs ?? 2000,
    retryOn: options.retryOn ?? ((err) => isTierError(err) && err.retryable),
    onRetry: options.onRetry,
    random: options.random ?? Math.random,
  };
}

/** Sleeps `ms`, rejecting with ABORTED if the signal fires first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  throwIfAborted(signal);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Runs `fn` with retries per `policy`. */
export async function retrying<T>(
  policy: ResolvedRetry,
  op: string,
  key: string | undefined,
  signal: AbortSignal | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= policy.attempts || signal?.aborted || !policy.retryOn(err)) throw err;
      const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.round(policy.random() * cap);
      policy.onRetry?.({ op, key, attempt, delayMs, error: err });
      await sleep(delayMs, signal);
    }
  }
}

class RetryTier extends DelegatingTier {
  readonly #policy: ResolvedRetry;

  constructor(inner: Tier, policy: ResolvedRetry) {
    super(inner);
    this.#policy = policy;
  }

  override stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    return retrying(this.#policy, 'stat', key, options?.signal, () => this.inner.stat(key, options));
  }
  override read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return retrying(this.#policy, 'read', key, options?.signal, () => this.inner.read(key, options));
  }
  override readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    return retrying(this.#policy, 'readInto', key, options?.signal, () =>
      this.inner.readInto(key, target, options),
    );
  }
  /** Retries opening the stream; a failure mid-stream surfaces as a stream error. */
  override readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    return retrying(this.#policy, 'readStream', key, options?.signal, () =>
      this.inner.readStream(key, options),
    );
  }
  override write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    if (!(data instanceof Uint8Array)) return this.inner.write(key, data, options);
    return retrying(this.#policy, 'write', key, options?.signal, () => this.inner.write(key, data, options));
  }
  override delete(key: string, options?: OpOptions): Promise<void> {
    return retrying(this.#policy, 'delete', key, options?.signal, () => this.inner.delete(key, options));
  }
}

/** A layer that retries retryable failures with backoff. */
export function withRetry(options?: RetryOptions): (inner: Tier) => Tier {
  const policy = resolveRetryOptions(options);
  return (inner) => new RetryTier(inner, policy);
}
