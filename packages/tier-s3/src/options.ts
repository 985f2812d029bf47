/**
 * Plain, serializable configuration for an S3 tier, validated and resolved once.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { assertPrefix, TierError } from '@tierkit/tier-core';

const MiB = 1024 * 1024;

export type ChecksumMode = 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export interface S3RetryOptions {
  /** Attempts per request (and per range), first one included. Default 6. */
  readonly attempts?: number;
  /** First backoff delay in ms; doubles per attempt, with full jitter. Default 100. */
  readonly baseDelayMs?: number;
  /** Largest backoff delay in ms. Default 5000. */
  readonly maxDelayMs?: number;
}

export interface S3AdaptiveOptions {
  /** A first part faster than this (bytes/s) marks a local/fast server. Default 300 MiB/s. */
  readonly fastBytesPerSecond?: number;
  /** Parallel ranges used against a fast server. Default 2. */
  readonly fastConcurrency?: number;
}

export interface S3TierOptions {
  readonly bucket: string;
  /** Key prefix inside the bucket; tier keys are joined under it and list strips it. */
  readonly prefix?: string;
  readonly name?: string;
  readonly region?: string;
  /** Endpoint of an S3-compatible store (MinIO, Ceph RGW, …). Unset for AWS. */
  readonly endpoint?: string;
  /** Path-style URLs (`endpoint/bucket/key`). Default true when `endpoint` is set. */
  readonly forcePathStyle?: boolean;
  /** Explicit credentials; default: the SDK's default provider chain. */
  readonly credentials?: S3Credentials;
  /** A client you already have; the tier does not destroy it on close. */
  readonly client?: S3Client;
  /** Default WHEN_REQUIRED when `endpoint` is set (S3-compatible stores), else the SDK's default. */
  readonly requestChecksumCalculation?: ChecksumMode;
  readonly responseChecksumValidation?: ChecksumMode;
  /** Reads larger than this are split into parallel ranged GETs. Default 8 MiB. */
  readonly partSize?: number;
  /** Most parallel ranged GETs per read. Default 16. */
  readonly concurrency?: number;
  /** Adapt the number of ranges to the measured speed of the first part; `false` always uses `concurrency`. */
  readonly adaptive?: S3AdaptiveOptions | false;
  /** Hard bound on bytes of ranges in flight or buffered across all reads of this tier. Default 256 MiB. */
  readonly maxBytesInFlight?: number;
  /**
   * GET requests in flight across every read into memory (`read`, `readInto`: every
   * block fill of a stack) of this tier, however many objects are being read: one
   * budget for a warm of many objects, not one per object. A freed slot goes to the
   * object with the fewest requests in flight, so small objects do not queue behind
   * the parts of big ones. Streams (`readStream`) are paced by their consumer and
   * bounded by `maxBytesInFlight` only. Default: `concurrency`.
   */
  readonly maxRequestsInFlight?: number;
  /** Writes larger than this use a multipart upload. Default 16 MiB. */
  readonly multipartThreshold?: number;
  /** Part size of multipart uploads (≥ 5 MiB). Default 8 MiB. */
  readonly uploadPartSize?: number;
  /** Parts uploaded in parallel per write. Default 4. */
  readonly uploadConcurrency?: number;
  /** Keys per ListObjectsV2 page (1–1000). Default 1000. */
  readonly listPageSize?: number;
  readonly retry?: S3RetryOptions;
  /**
   * Idle timeout in ms: a request fails (UNAVAILABLE, retryable, `details.timeout: 'idle'`) when no
   * byte moves for this long — waiting for the answer or in the middle of a body. 0: none. Default 30000.
   */
  readonly idleTimeoutMs?: number;
  /** TCP connect timeout in ms (`details.timeout: 'connect'`). 0: none. Default 10000. */
  readonly connectTimeoutMs?: number;
  /**
   * Total time one request may take, from sending it until its answer (body included) is read, in ms
   * (`details.timeout: 'deadline'`); each retry gets its own. 0 (default): no deadline.
   */
  readonly requestDeadlineMs?: number;
  /** @deprecated the old name of `idleTimeoutMs` (it always was an idle timeout). */
  readonly requestTimeoutMs?: number;
  /** @deprecated the old name of `connectTimeoutMs`. */
  readonly connectionTimeoutMs?: number;
  /**
   * Certificates (PEM) to trust for an `https:` endpoint, in addition to Node's CA store
   * (which `NODE_EXTRA_CA_CERTS` extends). For a private CA (MinIO, Ceph with an internal PKI).
   */
  readonly ca?: string | readonly string[];
  /** Most sockets per agent. Default max(64, 2 × concurrency). */
  readonly maxSockets?: number;
  /**
   * Ranged GETs go over tierkit's own sockets (plain or TLS), whose reads land
   * straight in the destination's memory; signed by the SDK's SigV4 signer.
   * Default true; it applies with the tier's own client (not an injected one)
   * to an `endpoint` (http or https, path-style or virtual-hosted) or to AWS
   * when `region` is set; anything else goes through the SDK.
   */
  readonly directGets?: boolean;
  /**
   * End-to-end integrity. `stat` asks for the object's stored checksum
   * (checksum mode on) and reports it, with the MD5 an ETag is, as the object's
   * `digests`: a stack's fill checks every byte it publishes against them (a
   * mismatch fetches again, then fails with INTEGRITY). A read that covers a
   * whole single-part object is checked against its MD5 ETag here as well.
   * Default true; false states nothing and checks nothing.
   */
  readonly verify?: boolean;
  /**
   * Take ETags as MD5s of the bytes (single-part: the MD5; multipart:
   * `md5(part MD5s)-N`, with the part size learned by a HEAD of part 1), as S3,
   * MinIO, Ceph RGW and s3rver make them — never under SSE-KMS or SSE-C, where
   * S3's ETag is something else. Turn off for a server whose ETags are of its own
   * making: a fill whose bytes keep disagreeing with such an ETag fails with
   * INTEGRITY and says so. Default true.
   */
  readonly etagDigests?: boolean;
}

export interface ResolvedS3Config {
  readonly name: string;
  readonly bucket: string;
  /** '' or ends with '/'. */
  readonly prefix: string;
  readonly region: string | undefined;
  readonly endpoint: string | undefined;
  readonly forcePathStyle: boolean;
  readonly requestChecksumCalculation: ChecksumMode | undefined;
  readonly responseChecksumValidation: ChecksumMode | undefined;
  readonly partSize: number;
  readonly concurrency: number;
  readonly adaptive: Required<S3AdaptiveOptions> | false;
  readonly maxBytesInFlight: number;
  readonly maxRequestsInFlight: number;
  readonly multipartThreshold: number;
  readonly uploadPartSize: number;
  readonly uploadConcurrency: number;
  readonly listPageSize: number;
  readonly retry: Required<S3RetryOptions>;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly requestDeadlineMs: number;
  /** PEM certificates trusted besides Node's CA store. */
  readonly ca: readonly string[] | undefined;
  readonly maxSockets: number;
  readonly directGets: boolean;
  readonly verify: boolean;
  readonly etagDigests: boolean;
}

function bad(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', `S3 tier: ${message}`, { retryable: false });
}

function int(
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw bad(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return value;
}

function checksum(
  name: string,
  value: unknown,
  fallback: ChecksumMode | undefined,
): ChecksumMode | undefined {
  if (value === undefined) return fallback;
  if (value !== 'WHEN_SUPPORTED' && value !== 'WHEN_REQUIRED') {
    throw bad(`${name} must be 'WHEN_SUPPORTED' or 'WHEN_REQUIRED', got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Node's timers hold at most 2^31 - 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function resolveCa(value: unknown): readonly string[] | undefined {
  if (value === undefined) return undefined;
  const list = typeof value === 'string' ? [value] : value;
  if (
    !Array.isArray(list) ||
    list.length === 0 ||
    !list.every((c) => typeof c === 'string' && c.includes('-----BEGIN CERTIFICATE-----'))
  ) {
    throw bad('ca must be a PEM certificate string or a non-empty array of them');
  }
  return Object.freeze([...list]);
}

// Bucket names per the S3 rules (lowercase, digits, dots, hyphens, 3–63 chars),
// loosened to allow underscores and capitals, which some compatible stores accept.
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$/;

export function resolveOptions(options: S3TierOptions): ResolvedS3Config {
  if (typeof options !== 'object' || options === null) throw bad('options must be an object');
  const { bucket } = options;
  if (typeof bucket !== 'string' || !BUCKET.test(bucket)) {
    throw bad(
      `bucket must be a valid bucket name (3–63 letters, digits, '.', '-', '_'), got ${JSON.stringify(bucket)}`,
    );
  }
  let prefix = options.prefix ?? '';
  if (typeof prefix !== 'string') throw bad('prefix must be a string');
  prefix = prefix.replace(/^\/+/, '');
  if (prefix !== '' && !prefix.endsWith('/')) prefix += '/';
  try {
    assertPrefix(prefix);
  } catch (err) {
    throw bad(`prefix ${JSON.stringify(options.prefix)} is not valid: ${(err as Error).message}`);
  }
  let endpoint = options.endpoint;
  if (endpoint !== undefined) {
    if (typeof endpoint !== 'string') throw bad('endpoint must be a URL string');
    try {
      const url = new URL(endpoint);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      throw bad(`endpoint must be an http(s) URL, got ${JSON.stringify(endpoint)}`);
    }
    endpoint = endpoint.replace(/\/+$/, '');
  }
  if (options.region !== undefined && (typeof options.region !== 'string' || options.region === '')) {
    throw bad('region must be a non-empty string');
  }
  const c = options.credentials;
  if (c !== undefined) {
    if (typeof c !== 'object' || typeof c.accessKeyId !== 'string' || typeof c.secretAccessKey !== 'string') {
      throw bad('credentials must be { accessKeyId, secretAccessKey, sessionToken? }');
    }
  }
  const compatible = endpoint !== undefined;
  const partSize = int('partSize', options.partSize, 8 * MiB, 64 * 1024, 5 * 1024 * MiB);
  const concurrency = int('concurrency', options.concurrency, 16, 1, 256);
  const maxBytesInFlight = int(
    'maxBytesInFlight',
    options.maxBytesInFlight,
    Math.max(256 * MiB, partSize),
    partSize,
  );
  const uploadPartSize = int('uploadPartSize', options.uploadPartSize, 8 * MiB, 5 * MiB, 5 * 1024 * MiB);
  let adaptive: Required<S3AdaptiveOptions> | false = false;
  if (options.adaptive !== false) {
    const a = options.adaptive ?? {};
    adaptive = {
      fastBytesPerSecond: int('adaptive.fastBytesPerSecond', a.fastBytesPerSecond, 300 * MiB, 1),
      fastConcurrency: int('adaptive.fastConcurrency', a.fastConcurrency, 2, 1, 256),
    };
  }
  const r = options.retry ?? {};
  return {
    name: options.name ?? `s3:${bucket}${prefix ? `/${prefix.slice(0, -1)}` : ''}`,
    bucket,
    prefix,
    region: options.region,
    endpoint,
    forcePathStyle: options.forcePathStyle ?? compatible,
    requestChecksumCalculation: checksum(
      'requestChecksumCalculation',
      options.requestChecksumCalculation,
      compatible ? 'WHEN_REQUIRED' : undefined,
    ),
    responseChecksumValidation: checksum(
      'responseChecksumValidation',
      options.responseChecksumValidation,
      compatible ? 'WHEN_REQUIRED' : undefined,
    ),
    partSize,
    concurrency,
    adaptive,
    maxBytesInFlight,
    maxRequestsInFlight: int('maxRequestsInFlight', options.maxRequestsInFlight, concurrency, 1, 1024),
    multipartThreshold: int('multipartThreshold', options.multipartThreshold, 16 * MiB, 0, 5 * 1024 * MiB),
    uploadPartSize,
    uploadConcurrency: int('uploadConcurrency', options.uploadConcurrency, 4, 1, 64),
    listPageSize: int('listPageSize', options.listPageSize, 1000, 1, 1000),
    retry: {
      attempts: int('retry.attempts', r.attempts, 6, 1, 100),
      baseDelayMs: int('retry.baseDelayMs', r.baseDelayMs, 100, 0),
      maxDelayMs: int('retry.maxDelayMs', r.maxDelayMs, 5000, 0),
    },
    idleTimeoutMs: int(
      'idleTimeoutMs',
      options.idleTimeoutMs ?? options.requestTimeoutMs,
      30_000,
      0,
      MAX_TIMER_MS,
    ),
    connectTimeoutMs: int(
      'connectTimeoutMs',
      options.connectTimeoutMs ?? options.connectionTimeoutMs,
      10_000,
      0,
      MAX_TIMER_MS,
    ),
    requestDeadlineMs: int('requestDeadlineMs', options.requestDeadlineMs, 0, 0, MAX_TIMER_MS),
    ca: resolveCa(options.ca),
    maxSockets: int('maxSockets', options.maxSockets, Math.max(64, 2 * concurrency), 1),
    directGets: options.directGets ?? true,
    verify: options.verify ?? true,
    etagDigests: options.etagDigests ?? true,
  };
}

const URL_NUMBERS = [
  'partSize',
  'concurrency',
  'maxBytesInFlight',
  'maxRequestsInFlight',
  'multipartThreshold',
  'uploadPartSize',
  'uploadConcurrency',
  'listPageSize',
  'idleTimeoutMs',
  'connectTimeoutMs',
  'requestDeadlineMs',
  'requestTimeoutMs',
  'connectionTimeoutMs',
  'maxSockets',
] as const;

/**
 * Parses `s3://bucket/prefix?region=…&endpoint=…&forcePathStyle=true&partSize=…`
 * into options; `extra` wins over what the URL says.
 */
export function optionsFromUrl(url: string | URL, extra: Partial<S3TierOptions> = {}): S3TierOptions {
  let u: URL;
  try {
    u = typeof url === 'string' ? new URL(url) : url;
  } catch {
    throw bad(`not a URL: ${JSON.stringify(String(url))}`);
  }
  if (u.protocol !== 's3:') throw bad(`expected an s3:// URL, got ${JSON.stringify(u.href)}`);
  const bucket = decodeURIComponent(u.hostname || u.host);
  const prefix = decodeURIComponent(u.pathname.replace(/^\/+/, ''));
  const fromQuery: Record<string, unknown> = {};
  for (const [k, v] of u.searchParams) {
    if (k === 'region' || k === 'endpoint' || k === 'name') fromQuery[k] = v;
    else if (k === 'forcePathStyle' || k === 'directGets' || k === 'verify' || k === 'etagDigests')
      fromQuery[k] = v === 'true' || v === '1';
    else if (k === 'requestChecksumCalculation' || k === 'responseChecksumValidation') fromQuery[k] = v;
    else if ((URL_NUMBERS as readonly string[]).includes(k)) {
      const n = Number(v);
      if (!Number.isFinite(n)) throw bad(`URL parameter ${k} must be a number, got ${JSON.stringify(v)}`);
      fromQuery[k] = n;
    } else throw bad(`unknown URL parameter ${JSON.stringify(k)}`);
  }
  return { bucket, ...(prefix ? { prefix } : {}), ...fromQuery, ...extra } as S3TierOptions;
}
