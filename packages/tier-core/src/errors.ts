/**
 * One error class for every tier, with a stable `code` and a `retryable` flag.
 * The brand is a global symbol so `isTierError` and `instanceof` work even when
 * two copies of tier-core are loaded (nested node_modules, ESM next to CJS).
 */

export type TierErrorCode =
  | 'NOT_FOUND'
  | 'INVALID_KEY'
  | 'INVALID_RANGE'
  | 'INVALID_ARGUMENT'
  | 'INTEGRITY'
  | 'CHANGED'
  | 'CAPACITY'
  | 'UNAVAILABLE'
  | 'ABORTED'
  | 'UNSUPPORTED'
  | 'CLOSED'
  | 'IO';

const BRAND = Symbol.for('tierkit.TierError');

/** Codes that are worth retrying by default (a transient condition). */
const RETRYABLE_BY_DEFAULT: ReadonlySet<TierErrorCode> = new Set(['UNAVAILABLE', 'IO']);

export interface TierErrorOptions {
  readonly retryable?: boolean;
  readonly cause?: unknown;
  /** The key the failed operation was about, where there is one. */
  readonly key?: string;
  /** The tier that raised the error. */
  readonly tier?: string;
  /** Free-form details that help a user act (e.g. an HTTP status, an errno). */
  readonly details?: Record<string, unknown>;
}

export class TierError extends Error {
  readonly code: TierErrorCode;
  readonly retryable: boolean;
  readonly key?: string;
  readonly tier?: string;
  readonly details?: Record<string, unknown>;

  constructor(code: TierErrorCode, message: string, options: TierErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TierError';
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE_BY_DEFAULT.has(code);
    if (options.key !== undefined) this.key = options.key;
    if (options.tier !== undefined) this.tier = options.tier;
    if (options.details !== undefined) this.details = options.details;
    Object.defineProperty(this, BRAND, { value: true });
  }

  static [Symbol.hasInstance](value: unknown): boolean {
    return isTierError(value);
  }
}

export function isTierError(value: unknown, code?: TierErrorCode): value is TierError {
  if (typeof value !== 'object' || value === null || (value as Record<symbol, unknown>)[BRAND] !== true) {
    return false;
  }
  return code === undefined || (value as TierError).code === code;
}

/** Throws `ABORTED` if the signal has fired. Cheap enough for every operation's entry. */
export function throwIfAborted(signal: AbortSignal | undefined, key?: string): void {
  if (signal?.aborted) throw abortError(signal, key);
}

export function abortError(signal: AbortSignal | undefined, key?: string): TierError {
  return new TierError('ABORTED', key ? `operation on '${key}' was aborted` : 'operation was aborted', {
    cause: signal?.reason,
    key,
    retryable: false,
  });
}

/**
 * Maps a Node.js system error (ENOENT, ENOSPC, …) to a TierError so callers see
 * one error type whatever the tier.
 */
export function fromSystemError(
  err: unknown,
  context: { key?: string; tier?: string; op: string },
): TierError {
  if (isTierError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  const where = context.key ? ` '${context.key}'` : '';
  const base = { cause: err, key: context.key, tier: context.tier, details: { errno: e?.code } };
  switch (e?.code) {
    case 'ENOENT':
      return new TierError('NOT_FOUND', `${context.op}${where}: not found`, base);
    case 'ENOSPC':
    case 'EDQUOT':
      return new TierError('CAPACITY', `${context.op}${where}: no space left on the device`, {
        ...base,
        retryable: false,
      });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new TierError('UNAVAILABLE', `${context.op}${where}: permission denied (${e.code})`, {
        ...base,
        retryable: false,
      });
    case 'ABORT_ERR':
      return new TierError('ABORTED', `${context.op}${where}: aborted`, { ...base, retryable: false });
    case 'EAGAIN':
    case 'EBUSY':
    case 'EMFILE':
    case 'ENFILE':
    case 'ESTALE':
    case 'ETIMEDOUT':
    case 'ECONNRESET':
    case 'EIO':
      return new TierError('IO', `${context.op}${where}: ${e.message}`, { ...base, retryable: true });
    default:
      return new TierError('IO', `${context.op}${where}: ${e?.message ?? String(err)}`, {
        ...base,
        retryable: false,
      });
  }
}
