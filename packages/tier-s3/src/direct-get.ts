/**
 * Ranged GETs over our own HTTP/1.1 sockets, plain or TLS, whose bodies land
 * straight in the caller's memory (net's `onread`, a buffer offered per read:
 * the kernel's copy on TCP, OpenSSL's decryption on TLS); see direct-conn.ts.
 *
 * Why: through the SDK (node:http underneath) every ~64 KiB of a body becomes a
 * new Buffer, a stream chunk and a copy. On the bench machine, a 1 GiB object
 * read as 8 MiB ranges × 8 cost about 1.5 s of user CPU that way and 0.1 s here,
 * on two cores shared with the server (bench/README.md). Requests are signed
 * with the SDK's SigV4 signer as the SDK signs them. Answers this reader does
 * not take (a 2xx body without Content-Length) go back to the SDK.
 *
 * Responses look like the SDK's (`$metadata.httpStatusCode`, `ETag`,
 * `ContentRange`, errors named by their S3 code), so the tier's checks, retries
 * and error mapping treat both paths alike.
 */
import { isIP } from 'node:net';
import { TierError } from '@tierkit/tier-core';
import { Conn, NetError, type TlsOptions } from './direct-conn.js';

/** Signs a request the way the SDK does (SigV4 headers). */
export interface RequestSigner {
  sign(request: SignableRequest): Promise<SignableRequest>;
}

export interface SignableRequest {
  method: string;
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
}

export interface DirectGetOptions {
  /** `http(s)://host:port[/base]`. */
  readonly endpoint: string;
  readonly bucket: string;
  /** `bucket.host` rather than `host/bucket` (virtual-hosted addressing). */
  readonly virtualHosted?: boolean;
  /** TLS trust for an https endpoint (PEM); default Node's CA store, with NODE_EXTRA_CA_CERTS. */
  readonly ca?: readonly string[];
  readonly signer: RequestSigner;
  readonly maxSockets: number;
  /** No byte for this long, waiting for an answer or within a body: ETIMEDOUT (`timeout: 'idle'`). */
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  /** Idle keep-alive sockets close after this long (default 4 s: under common server limits). */
  readonly idleMs?: number;
}

/** The parts of a GetObject answer the tier reads; the body is read with `Body.into`. */
export interface DirectResponse {
  readonly $metadata: { readonly httpStatusCode: number };
  readonly ETag: string | undefined;
  readonly ContentRange: string | undefined;
  readonly ContentLength: number | undefined;
  readonly LastModified: Date | undefined;
  readonly ServerSideEncryption: string | undefined;
  readonly SSECustomerAlgorithm: string | undefined;
  readonly Body: DirectBody;
}

/** An error shaped like the SDK's service errors: name = the S3 code, $metadata.httpStatusCode. */
export class DirectHttpError extends Error {
  readonly $metadata: { httpStatusCode: number };
  readonly Code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = code;
    this.Code = code;
    this.$metadata = { httpStatusCode: status };
  }
}

/** An answer this reader does not take; the caller asks through the SDK instead. */
export class DirectUnsupported extends Error {
  override readonly name = 'DirectUnsupported';
}

const ERROR_BODY_MAX = 64 * 1024;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const STATUS_CODES: Record<number, string> = {
  400: 'BadRequest',
  403: 'Forbidden',
  404: 'NotFound',
  412: 'PreconditionFailed',
  416: 'InvalidRange',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
};

/** S3 key → URL path, segment by segment, as the SDK encodes it. */
export function encodeKey(key: string): string {
  return key
    .split('/')
    .map((s) =>
      encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`),
    )
    .join('/');
}

function hasControlCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

interface Head {
  readonly status: number;
  readonly headers: Map<string, string>;
  /** Header names that came more than once. */
  readonly repeated: Set<string>;
}

function parseHead(text: string): Head {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m)
    throw new NetError('EPROTO', `not an HTTP/1.1 answer: ${JSON.stringify((lines[0] ?? '').slice(0, 40))}`);
  const headers = new Map<string, string>();
  const repeated = new Set<string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.indexOf(':');
    if (c <= 0) continue;
    const name = line.slice(0, c).trim().toLowerCase();
    if (headers.has(name)) repeated.add(name);
    headers.set(name, line.slice(c + 1).trim());
  }
  return { status: Number(m[1]), headers, repeated };
}

/** The body of a direct answer: read once, into the caller's memory. */
export class DirectBody {
  #conn: Conn | undefined;
  #reading = false;
  readonly #pool: DirectGets;
  readonly #length: number;
  readonly #signal: AbortSignal | undefined;
  constructor(conn: Conn, pool: DirectGets, length: number, signal: AbortSignal | undefined) {
    this.#conn = conn;
    this.#pool = pool;
    this.#length = length;
    this.#signal = signal;
  }

  get destroyed(): boolean {
    return this.#conn === undefined;
  }

  /**
   * Skips `skip` bytes of the body, then writes up to `length` bytes at
   * `dest[at…]`. Returns how many it wrote and how many the body had (`seen`);
   * a body that ended early returns short, a broken connection throws.
   */
  async into(
    dest: Uint8Array,
    at: number,
    skip: number,
    length: number,
    onBytes?: (n: number) => void,
  ): Promise<{ got: number; seen: number }> {
    const conn = this.#conn;
    if (!conn) throw new NetError('ECONNRESET', 'the body was already read or dropped');
    let got = 0;
    const count = (n: number) => {
      got += n;
      onBytes?.(n);
    };
    const onAbort = () => conn.destroy(abortErrorOf(this.#signal));
    this.#signal?.addEventListener('abort', onAbort, { once: true });
    if (this.#signal?.aborted) onAbort();
    this.#reading = true;
    try {
      await conn.body(this.#length, dest, at, skip, length, count);
      return { got, seen: conn.seen };
    } finally {
      this.#signal?.removeEventListener('abort', onAbort);
      this.#reading = false;
      this.#conn = undefined;
      this.#pool.release(conn, conn.seen === this.#length);
    }
  }

  /** Drops the body and its connection (released by `into` when it is reading). */
  destroy(): void {
    const conn = this.#conn;
    if (!conn) return;
    conn.destroy();
    if (this.#reading) return;
    this.#conn = undefined;
    this.#pool.release(conn, false);
  }
}

function abortErrorOf(signal: AbortSignal | undefined): Error {
  const e = new Error('aborted');
  e.name = 'AbortError';
  (e as Error & { cause?: unknown }).cause = signal?.reason;
  return e;
}

/** A pool of direct connections to one endpoint. */
export class DirectGets {
  readonly #o: DirectGetOptions;
  readonly #host: string;
  readonly #hostHeader: string;
  readonly #port: number;
  /** Path before the key: `/bucket` (path style) or `` (virtual-hosted), after the endpoint's own path. */
  readonly #prefix: string;
  readonly #protocol: string;
  readonly #tls: TlsOptions | undefined;
  #session: Buffer | undefined;
  readonly #idle: Conn[] = [];
  #open = 0;
  readonly #waiters: (() => void)[] = [];
  #closed = false;
  /** Given up for the SDK (an answer this path cannot take): new requests go there too. */
  #retired = false;

  constructor(o: DirectGetOptions) {
    this.#o = o;
    const u = new URL(o.endpoint);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new DirectUnsupported(`direct GETs need an http(s): endpoint, not ${u.protocol}`);
    }
    this.#protocol = u.protocol;
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const dnsName = /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(o.bucket);
    if (o.virtualHosted && (isIP(host) || !dnsName || (u.protocol === 'https:' && o.bucket.includes('.')))) {
      // An IP has no subdomains, a bucket with capitals or '_' is no host name (the SDK
      // addresses it path-style), and a dotted one breaks the wildcard certificate.
      throw new DirectUnsupported(`bucket '${o.bucket}' cannot be addressed virtual-hosted at ${u.host}`);
    }
    this.#host = o.virtualHosted ? `${o.bucket}.${host}` : host;
    this.#port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
    this.#hostHeader = o.virtualHosted ? `${o.bucket}.${u.host}` : u.host;
    const base = u.pathname.replace(/\/+$/, '');
    this.#prefix = o.virtualHosted ? base : `${base}/${o.bucket}`;
    if (u.protocol === 'https:') {
      this.#tls = {
        // SNI names a host, never an address (RFC 6066).
        ...(isIP(this.#host) ? {} : { servername: this.#host }),
        ...(o.ca ? { ca: [...o.ca] } : {}),
        ALPNProtocols: ['http/1.1'],
        onSession: (session: Buffer) => {
          this.#session = session;
        },
      };
    }
  }

  /**
   * GET `bytes=from-to` of `key` (the full key in the bucket). Resolves with the
   * answer's head; read its body with `Body.into` or drop it with `Body.destroy`.
   * Errors are SDK-shaped (status, S3 code) or Node network errors.
   */
  async get(
    key: string,
    range: string,
    ifMatch: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<DirectResponse> {
    if (signal?.aborted) throw abortErrorOf(signal);
    const path = `${this.#prefix}/${encodeKey(key)}`;
    const headers: Record<string, string> = {
      host: this.#hostHeader,
      range,
      'x-amz-content-sha256': EMPTY_SHA256,
    };
    if (ifMatch !== undefined) {
      // Written into the request as is: a CR or LF would end the header early.
      if (hasControlCharacter(ifMatch)) {
        throw new TierError(
          'INVALID_ARGUMENT',
          `ifMatch ${JSON.stringify(ifMatch)} holds control characters`,
          {
            retryable: false,
          },
        );
      }
      headers['if-match'] = ifMatch;
    }
    const signed = await this.#o.signer.sign({
      method: 'GET',
      protocol: this.#protocol,
      hostname: this.#host,
      port: this.#port,
      path,
      query: {},
      headers,
    });
    let text = `GET ${path} HTTP/1.1\r\n`;
    for (const [k, v] of Object.entries(signed.headers)) text += `${k}: ${v}\r\n`;
    text += '\r\n';
    // A kept-alive socket the server closed meanwhile fails before any answer: one more try, on a new one.
    for (let attempt = 0; ; attempt++) {
      const conn = await this.#acquire(signal);
      const reused = conn.used;
      const onAbort = () => conn.destroy(abortErrorOf(signal));
      signal?.addEventListener('abort', onAbort, { once: true });
      let head: Head;
      try {
        // (Aborted while signing or waiting for a socket: the listener above came too late.)
        if (signal?.aborted) throw abortErrorOf(signal);
        await conn.ready;
        head = parseHead(await conn.request(text, this.#o.idleTimeoutMs));
      } catch (err) {
        this.release(conn, false);
        if (signal?.aborted) throw abortErrorOf(signal);
        if (reused && attempt === 0 && conn.nothingReceived) continue;
        throw err;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      return this.#answer(conn, head, signal);
    }
  }

  async #answer(conn: Conn, head: Head, signal: AbortSignal | undefined): Promise<DirectResponse> {
    const h = head.headers;
    const cl = h.get('content-length');
    // A Transfer-Encoding (with or without a Content-Length) is not ours to decode; nor is a listed length.
    const length =
      cl !== undefined &&
      /^\d+$/.test(cl) &&
      !h.has('transfer-encoding') &&
      !head.repeated.has('content-length')
        ? Number(cl)
        : undefined;
    if (h.get('connection')?.toLowerCase() === 'close') conn.reusable = false;
    if (head.status >= 300) {
      // Read a bounded error document for its S3 code; anything else is dropped with the connection.
      let code = STATUS_CODES[head.status] ?? `HTTP${head.status}`;
      let message = `the server answered HTTP ${head.status}`;
      if (length !== undefined && length <= ERROR_BODY_MAX) {
        const doc = new Uint8Array(length);
        const { got } = await new DirectBody(conn, this, length, signal).into(doc, 0, 0, length);
        const xml = Buffer.from(doc.buffer, 0, got).toString('utf8');
        code = /<Code>([^<]+)<\/Code>/.exec(xml)?.[1] ?? code;
        message = /<Message>([^<]*)<\/Message>/.exec(xml)?.[1] ?? message;
      } else {
        conn.destroy();
        this.release(conn, false);
      }
      throw new DirectHttpError(head.status, code, `${code}: ${message}`);
    }
    if (length === undefined) {
      conn.destroy();
      this.release(conn, false);
      throw new DirectUnsupported(
        'a 2xx answer without one plain Content-Length (chunked or close-delimited)',
      );
    }
    const cr = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(h.get('content-range') ?? '');
    if (cr && Number(cr[2]) - Number(cr[1]) + 1 !== length) {
      conn.destroy();
      this.release(conn, false);
      throw new NetError(
        'EPROTO',
        `Content-Length ${length} does not match Content-Range ${h.get('content-range')}`,
      );
    }
    const lm = h.get('last-modified');
    return {
      $metadata: { httpStatusCode: head.status },
      ETag: h.get('etag'),
      ContentRange: h.get('content-range'),
      ContentLength: length,
      LastModified: lm ? new Date(lm) : undefined,
      ServerSideEncryption: h.get('x-amz-server-side-encryption'),
      SSECustomerAlgorithm: h.get('x-amz-server-side-encryption-customer-algorithm'),
      Body: new DirectBody(conn, this, length, signal),
    };
  }

  async #acquire(signal: AbortSignal | undefined): Promise<Conn> {
    for (;;) {
      if (this.#closed) throw new TierError('CLOSED', 'the S3 tier was closed', { retryable: false });
      if (this.#retired) throw new DirectUnsupported('direct GETs were given up for the SDK');
      const c = this.#idle.pop();
      if (c) {
        clearTimeout(c.idleTimer);
        if (c.alive) {
          c.socket.ref();
          return c;
        }
        this.#open--;
        continue;
      }
      if (this.#open < this.#o.maxSockets) {
        this.#open++;
        const tls = this.#tls && { ...this.#tls, ...(this.#session ? { session: this.#session } : {}) };
        return new Conn(this.#host, this.#port, this.#o.connectTimeoutMs, tls);
      }
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          const i = this.#waiters.indexOf(wake);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(abortErrorOf(signal));
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        this.#waiters.push(wake);
      });
    }
  }

  /** Back to the pool when the answer was read to its end on a sound connection; else closed. */
  release(conn: Conn, complete: boolean): void {
    conn.release();
    if (complete && conn.alive && !this.#closed && !this.#retired) {
      conn.socket.setTimeout(0);
      conn.idleTimer = setTimeout(() => {
        const i = this.#idle.indexOf(conn);
        if (i >= 0) {
          this.#idle.splice(i, 1);
          this.#open--;
          conn.destroy();
        }
      }, this.#o.idleMs ?? 4000);
      conn.idleTimer.unref();
      // An idle socket does not keep the process alive.
      conn.socket.unref();
      this.#idle.push(conn);
    } else {
      conn.destroy();
      this.#open--;
    }
    this.#waiters.shift()?.();
  }

  /**
   * Stops taking requests (each one waiting or new goes to the SDK, as the one
   * that found an answer this path cannot take did); requests in flight finish.
   */
  retire(): void {
    this.#retired = true;
    for (const c of this.#idle.splice(0)) {
      clearTimeout(c.idleTimer);
      c.destroy();
      this.#open--;
    }
    for (const w of this.#waiters.splice(0)) w();
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#idle.splice(0)) {
      clearTimeout(c.idleTimer);
      c.destroy();
    }
    this.#open = 0;
    for (const w of this.#waiters.splice(0)) w();
  }
}
