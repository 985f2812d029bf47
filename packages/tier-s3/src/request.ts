/**
 * Request plumbing shared by the read and write paths: the SDK client's HTTP
 * settings (timeouts that fire, no warnings on stderr), per-attempt deadlines,
 * and retries with backoff.
 */
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { rootCertificates } from 'node:tls';
import type { S3ClientConfig } from '@aws-sdk/client-s3';
import { abortError } from '@tierkit/tier-core';
import { errorName, statusOf, timeoutError, toTierError } from './errors.js';
import type { ResolvedS3Config, S3Credentials } from './options.js';

export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(t);
      reject(abortError(signal));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One attempt's signal: the caller's, plus the request deadline when one is set.
 * `hold()` keeps the deadline running after the attempt returns (the first GET
 * of a read hands its body on); the holder calls `done()`.
 */
export class AttemptScope {
  readonly signal: AbortSignal | undefined;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #deadline: AbortController | undefined;
  #held = false;

  constructor(outer: AbortSignal | undefined, deadlineMs: number) {
    if (deadlineMs <= 0) {
      this.signal = outer;
      return;
    }
    const ac = new AbortController();
    this.#deadline = ac;
    this.#timer = setTimeout(() => ac.abort(new Error('request deadline')), deadlineMs);
    this.signal = outer ? AbortSignal.any([outer, ac.signal]) : ac.signal;
    setMaxListeners(0, this.signal);
  }

  /** Whether the deadline (not the caller) ended the attempt. */
  get expired(): boolean {
    return this.#deadline?.signal.aborted === true;
  }

  hold(): this {
    this.#held = true;
    return this;
  }

  /** Ends the attempt's deadline, unless held (then the holder ends it with `done`). */
  release(): void {
    if (!this.#held) this.done();
  }

  done(): void {
    clearTimeout(this.#timer);
  }
}

export interface RetryContext {
  readonly op: string;
  readonly key: string | undefined;
  readonly tier: string;
  readonly config: ResolvedS3Config;
}

/**
 * Bounded attempts with exponential backoff and full jitter, on retryable
 * errors only. `attemptsUsed` counts attempts already spent (a resumed body).
 */
export async function retry<T>(
  ctx: RetryContext,
  signal: AbortSignal | undefined,
  fn: (attempt: number, scope: AttemptScope) => Promise<T>,
  attemptsUsed = 0,
): Promise<T> {
  const { attempts, baseDelayMs, maxDelayMs } = ctx.config.retry;
  for (let attempt = attemptsUsed + 1; ; attempt++) {
    const scope = new AttemptScope(signal, ctx.config.requestDeadlineMs);
    try {
      return await fn(attempt, scope);
    } catch (err) {
      scope.done();
      if (signal?.aborted) throw abortError(signal, ctx.key);
      const te = scope.expired
        ? timeoutError(ctx, 'deadline', ctx.config.requestDeadlineMs, err)
        : toTierError(err, { ...ctx, signal });
      if (!te.retryable || attempt >= attempts) throw te;
      // Throttling asks for a longer pause than a dropped connection.
      const throttled = statusOf(err) === 503 || statusOf(err) === 429 || errorName(err) === 'SlowDown';
      const cap = Math.min(maxDelayMs, baseDelayMs * (throttled ? 4 : 1) * 2 ** (attempt - 1));
      await sleep(Math.random() * cap, signal);
    } finally {
      scope.release();
    }
  }
}

/** The SDK's logger, silenced: its warnings (a request "exceeded" a timer, sockets at capacity) are not ours to print. */
const QUIET = Object.freeze({
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
});

/**
 * The S3 client's settings. Timeouts: `connectionTimeout` (connect) and
 * `socketTimeout` (idle: armed on the socket, so it also fires in the middle
 * of a body); the handler's `requestTimeout` is a timer that only logs, so it
 * is never set, and the deadline is ours (AttemptScope).
 */
export function clientConfig(c: ResolvedS3Config, credentials: S3Credentials | undefined): S3ClientConfig {
  const agentOptions = { keepAlive: true, maxSockets: c.maxSockets };
  return {
    ...(c.region ? { region: c.region } : c.endpoint ? { region: 'us-east-1' } : {}),
    ...(c.endpoint ? { endpoint: c.endpoint } : {}),
    forcePathStyle: c.forcePathStyle,
    ...(credentials ? { credentials: { ...credentials } } : {}),
    ...(c.requestChecksumCalculation ? { requestChecksumCalculation: c.requestChecksumCalculation } : {}),
    ...(c.responseChecksumValidation ? { responseChecksumValidation: c.responseChecksumValidation } : {}),
    // Retries are ours: per range, resuming, and aware of truncated bodies.
    maxAttempts: 1,
    logger: QUIET,
    requestHandler: {
      httpAgent: new HttpAgent(agentOptions),
      httpsAgent: new HttpsAgent(httpsAgentOptions(c, agentOptions)),
      connectionTimeout: c.connectTimeoutMs,
      socketTimeout: c.idleTimeoutMs,
      logger: QUIET,
    },
  };
}

/** TLS trust: Node's CA store (with NODE_EXTRA_CA_CERTS) plus the `ca` option. */
export function httpsAgentOptions<T extends object>(c: ResolvedS3Config, base: T): T & { ca?: string[] } {
  if (!c.ca) return base;
  // A `ca` replaces Node's store: the bundled roots and NODE_EXTRA_CA_CERTS's stay trusted.
  return { ...base, ca: [...rootCertificates, ...extraCaCertificates(), ...c.ca] };
}

function extraCaCertificates(): string[] {
  const file = process.env.NODE_EXTRA_CA_CERTS;
  if (!file) return [];
  try {
    return [readFileSync(file, 'utf8')];
  } catch {
    // Node itself only warns about an unreadable file; so do we (by ignoring it).
    return [];
  }
}

/**
 * The tier's budget of GET requests in flight, shared by every read into
 * memory (`read`, `readInto`: every block fill of a stack) however many
 * objects are being read: a warm of many objects keeps the server at its
 * ceiling without piling requests up on it. A free slot goes to the waiting
 * key with the fewest requests in flight (then the longest waiting), so a
 * small object read next to big ones (a config file beside model shards)
 * waits for one request at most, not behind every queued part of theirs.
 */
export class RequestSlots {
  readonly capacity: number;
  #inFlight = 0;
  /** Requests in flight per key. */
  readonly #perKey = new Map<string, number>();
  readonly #waiters: { key: string; resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  acquire(key: string, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal, key));
    if (this.#waiters.length === 0 && this.#inFlight < this.capacity) {
      this.#take(key);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(abortError(signal, key));
      };
      const waiter = {
        key,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  release(key: string): void {
    const n = this.#perKey.get(key) ?? 0;
    if (n <= 1) this.#perKey.delete(key);
    else this.#perKey.set(key, n - 1);
    this.#inFlight = Math.max(0, this.#inFlight - 1);
    while (this.#inFlight < this.capacity && this.#waiters.length > 0) {
      let best = 0;
      let bestLoad = Number.POSITIVE_INFINITY;
      for (let i = 0; i < this.#waiters.length; i++) {
        const load = this.#perKey.get(this.#waiters[i]!.key) ?? 0;
        if (load < bestLoad) {
          best = i;
          bestLoad = load;
          if (load === 0) break;
        }
      }
      const w = this.#waiters.splice(best, 1)[0]!;
      this.#take(w.key);
      w.resolve();
    }
  }

  #take(key: string): void {
    this.#inFlight++;
    this.#perKey.set(key, (this.#perKey.get(key) ?? 0) + 1);
  }
}

/**
 * Builds an SDK client without its NodeVersionSupportWarning: the notice is about
 * SDK releases tierkit does not use (it pins its SDK and declares the Node versions
 * it supports), so it is not for our users' logs. The SDK's own switch is set only
 * while our client is built; the user's environment is left as it was, and no other
 * warning is touched.
 */
export function withoutSdkVersionNotice<T>(build: () => T): T {
  const name = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';
  const before = process.env[name];
  process.env[name] = 'true';
  try {
    return build();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}
