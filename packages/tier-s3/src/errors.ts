/**
 * Maps S3 / network failures to TierError and decides what is worth retrying.
 */
import { isTierError, TierError } from '@tierkit/tier-core';

interface SdkLikeError {
  name?: string;
  code?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $response?: { statusCode?: number };
  cause?: unknown;
}

// Socket-level failures: the request may not have reached the server, or the
// reply was cut; either way another attempt can succeed.
const NETWORK_CODES = new Set([
  // An answer that broke HTTP (direct GETs): worth another try on a fresh connection.
  'EPROTO',
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

const THROTTLE_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequests',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
  'RequestTimeoutException',
]);

const CONFIG_HINTS: Record<string, string> = {
  NoSuchBucket: 'the bucket does not exist: check the bucket name, the region and the endpoint',
  AccessDenied: 'access denied: check the credentials and the bucket policy/ACL for this key',
  InvalidAccessKeyId: 'the access key id is not known to the server: check the credentials and the endpoint',
  SignatureDoesNotMatch:
    'the request signature was refused: check the secret key, the region and the endpoint',
  InvalidBucketName: 'the bucket name is not valid for this server',
  PermanentRedirect: 'the bucket lives in another region or needs another endpoint: check the region',
  AuthorizationHeaderMalformed: 'the authorization header was refused: check the region',
  ExpiredToken: 'the session token has expired: refresh the credentials',
  InvalidToken: 'the session token is not valid: check the credentials',
};

export function statusOf(err: unknown): number | undefined {
  const e = err as SdkLikeError;
  return e?.$metadata?.httpStatusCode ?? e?.$response?.statusCode;
}

export function errorName(err: unknown): string | undefined {
  const e = err as SdkLikeError;
  return e?.Code ?? e?.name;
}

export function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(err) === 404;
}

function networkCode(err: unknown): string | undefined {
  let e = err as SdkLikeError | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (e.code && NETWORK_CODES.has(e.code)) return e.code;
    if (
      typeof e.message === 'string' &&
      /socket hang up|aborted|premature close|ECONNRESET|EPIPE/i.test(e.message)
    ) {
      return e.code ?? 'ECONNRESET';
    }
    e = e.cause as SdkLikeError | undefined;
  }
  return undefined;
}

/** Converts anything thrown by the SDK (or our body reader) to a TierError. */
export function toTierError(
  err: unknown,
  ctx: { op: string; key?: string; tier: string; signal?: AbortSignal },
): TierError {
  if (isTierError(err)) return err;
  const where = ctx.key ? ` '${ctx.key}'` : '';
  const status = statusOf(err);
  const name = errorName(err);
  const base = { cause: err, key: ctx.key, tier: ctx.tier, details: { status, name } };
  if (ctx.signal?.aborted || name === 'AbortError') {
    return new TierError('ABORTED', `${ctx.op}${where}: aborted`, { ...base, retryable: false });
  }
  if (name && CONFIG_HINTS[name]) {
    return new TierError('UNAVAILABLE', `${ctx.op}${where}: ${name}: ${CONFIG_HINTS[name]}`, {
      ...base,
      retryable: false,
    });
  }
  if (status === 403) {
    return new TierError('UNAVAILABLE', `${ctx.op}${where}: HTTP 403: ${CONFIG_HINTS.AccessDenied}`, {
      ...base,
      retryable: false,
    });
  }
  if (status === 412 || name === 'PreconditionFailed') {
    return new TierError('CHANGED', `${ctx.op}${where}: the object changed during the read`, {
      ...base,
      retryable: false,
    });
  }
  if (status === 429 || (status !== undefined && status >= 500) || (name && THROTTLE_NAMES.has(name))) {
    return new TierError(
      'UNAVAILABLE',
      `${ctx.op}${where}: the server answered ${status ?? ''} ${name ?? ''}`.trim(),
      {
        ...base,
        retryable: true,
      },
    );
  }
  const net = networkCode(err);
  if (net) {
    const e = err as SdkLikeError;
    return new TierError('UNAVAILABLE', `${ctx.op}${where}: network error (${net}): ${e?.message ?? ''}`, {
      ...base,
      details: { ...base.details, errno: net },
      retryable: true,
    });
  }
  const e = err as SdkLikeError;
  return new TierError('IO', `${ctx.op}${where}: ${name ? `${name}: ` : ''}${e?.message ?? String(err)}`, {
    ...base,
    retryable: false,
  });
}

/** A body that ended before its Content-Length (or the requested range): never data. */
export function truncatedError(key: string, tier: string, got: number, expected: number): TierError {
  return new TierError('IO', `read '${key}': the body ended after ${got} of ${expected} bytes (truncated)`, {
    key,
    tier,
    retryable: true,
    details: { got, expected, truncated: true },
  });
}

export function changedError(key: string, tier: string, why: string): TierError {
  return new TierError('CHANGED', `read '${key}': the object changed during a multi-part read (${why})`, {
    key,
    tier,
    retryable: false,
  });
}
