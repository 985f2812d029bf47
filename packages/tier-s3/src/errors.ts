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
  /** Set by direct GETs on their own timeouts. */
  timeout?: TimeoutKind;
}

export type TimeoutKind = 'connect' | 'idle' | 'deadline';

/** A request that ran out of time: retryable, with the kind in `details.timeout`. */
export function timeoutError(
  ctx: { op: string; key?: string | undefined; tier: string },
  kind: TimeoutKind,
  ms: number | undefined,
  cause?: unknown,
): TierError {
  const where = ctx.key ? ` '${ctx.key}'` : '';
  const what =
    kind === 'connect'
      ? 'no connection to the server'
      : kind === 'idle'
        ? 'no bytes from the server'
        : 'the request did not complete';
  return new TierError(
    'UNAVAILABLE',
    `${ctx.op}${where}: timed out: ${what}${ms ? ` within ${ms} ms` : ''}`,
    {
      cause,
      key: ctx.key,
      tier: ctx.tier,
      retryable: true,
      details: { timeout: kind, ...(ms ? { ms } : {}), status: statusOf(cause) },
    },
  );
}

/** The kind of a timeout thrown by the SDK's handler, a socket, or a direct GET; undefined if none. */
function timeoutKind(err: unknown): TimeoutKind | undefined {
  let e = err as SdkLikeError | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (e.timeout) return e.timeout;
    if (e.name === 'TimeoutError' || e.code === 'ETIMEDOUT' || e.code === 'ESOCKETTIMEDOUT') {
      return /establish a connection|connect/i.test(e.message ?? '') ? 'connect' : 'idle';
    }
    e = e.cause as SdkLikeError | undefined;
  }
  return undefined;
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

// A certificate the client does not trust: retrying will not help, the configuration will.
const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function tlsTrustCode(err: unknown): string | undefined {
  let e = err as SdkLikeError | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (e.code && TLS_TRUST_CODES.has(e.code)) return e.code;
    e = e.cause as SdkLikeError | undefined;
  }
  return undefined;
}

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
  const untrusted = tlsTrustCode(err);
  if (untrusted) {
    return new TierError(
      'UNAVAILABLE',
      `${ctx.op}${where}: the server's TLS certificate is not trusted (${untrusted}): ` +
        'check the endpoint, or trust its CA with the `ca` option or NODE_EXTRA_CA_CERTS',
      { ...base, details: { ...base.details, errno: untrusted }, retryable: false },
    );
  }
  const timeout = timeoutKind(err);
  if (timeout) return timeoutError(ctx, timeout, undefined, err);
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
  // An error answer the SDK could not parse (an HTML 413 from a proxy) still says its status.
  const http = status !== undefined && status >= 300 ? `the server answered HTTP ${status}: ` : '';
  return new TierError(
    'IO',
    `${ctx.op}${where}: ${http}${name ? `${name}: ` : ''}${e?.message ?? String(err)}`,
    {
      ...base,
      retryable: false,
    },
  );
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
