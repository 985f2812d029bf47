/**
 * Ranged GETs over plain HTTP/1.1 sockets whose bodies the kernel copies straight
 * into the caller's memory (net.Socket `onread`, a buffer offered per read).
 *
 * Why: through the SDK (node:http underneath) every ~64 KiB of a body becomes a
 * new Buffer, a stream chunk and a copy. On the bench machine, a 1 GiB object
 * read as 8 MiB ranges × 8 cost about 1.5 s of user CPU that way and 0.1 s here,
 * on two cores shared with the server (bench/README.md). Requests are signed
 * with the SDK's SigV4 signer as the SDK signs them. TLS endpoints, and answers
 * this reader does not take (a 2xx body without Content-Length), stay on the SDK.
 *
 * Responses look like the SDK's (`$metadata.httpStatusCode`, `ETag`,
 * `ContentRange`, errors named by their S3 code), so the tier's checks, retries
 * and error mapping treat both paths alike.
 */
import { connect, type Socket } from 'node:net';
import { TierError } from '@tierkit/tier-core';

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
  /** `http://host:port[/base]`, path-style addressing. */
  readonly endpoint: string;
  readonly bucket: string;
  readonly signer: RequestSigner;
  readonly maxSockets: number;
  readonly requestTimeoutMs: number;
  readonly connectionTimeoutMs: number;
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

class NetError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

const HEAD_MAX = 64 * 1024;
/** Scratch for reads that are not the body's final place (skipped bytes, error bodies, the first read after a pause). */
const SCRATCH = 64 * 1024;
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

type Phase = 'idle' | 'head' | 'wait' | 'body';
type Offered = 'head' | 'scratch' | 'dest';

/**
 * One keep-alive connection, one request at a time. The head is read into a
 * small buffer; the socket then pauses until the caller names the body's
 * memory (`body`), and every later read lands there.
 */
class Conn {
  readonly socket: Socket;
  readonly ready: Promise<void>;
  reusable = true;
  used = false;
  idleTimer: NodeJS.Timeout | undefined;
  #buf = new Uint8Array(HEAD_MAX + SCRATCH);
  #headLen = 0;
  #headEnd = 0;
  #phase: Phase = 'idle';
  #offered: Offered = 'scratch';
  #dest: Uint8Array | undefined;
  #destAt = 0;
  #destEnd = 0;
  #skip = 0;
  #seen = 0;
  #expected = 0;
  #onBytes: ((n: number) => void) | undefined;
  #onHead: ((r: string | Error) => void) | undefined;
  #onBody: ((err: Error | undefined) => void) | undefined;
  #error: Error | undefined;

  constructor(host: string, port: number, connectTimeoutMs: number) {
    this.socket = connect({
      host,
      port,
      noDelay: true,
      onread: { buffer: () => this.#nextBuffer(), callback: (n) => this.#onRead(n) },
    });
    this.ready = new Promise<void>((resolve, reject) => {
      // 0: no connect timeout, as the SDK reads it.
      const t =
        connectTimeoutMs > 0
          ? setTimeout(
              () => this.socket.destroy(new NetError('ETIMEDOUT', `connect to ${host}:${port} timed out`)),
              connectTimeoutMs,
            )
          : undefined;
      this.socket.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
      this.socket.once('close', () => {
        clearTimeout(t);
        reject(this.#error ?? new NetError('ECONNREFUSED', `connect to ${host}:${port} failed`));
      });
    });
    this.ready.catch(() => {});
    this.socket.on('error', (err) => this.#fail(err));
    this.socket.on('end', () => this.#fail(new NetError('ECONNRESET', 'the server closed the connection')));
    this.socket.on('close', () => this.#fail(new NetError('ECONNRESET', 'the connection closed')));
    this.socket.on('timeout', () =>
      this.socket.destroy(new NetError('ETIMEDOUT', 'no answer from the server within the request timeout')),
    );
  }

  get alive(): boolean {
    return this.reusable && !this.#error && !this.socket.destroyed;
  }
  /** Body bytes received. */
  get seen(): number {
    return this.#seen;
  }
  /** Whether a failure came before any byte of the answer (a stale keep-alive socket). */
  get nothingReceived(): boolean {
    return this.#headLen === 0;
  }

  /** Sends a request; resolves with the raw head of the answer. */
  request(text: string, timeoutMs: number): Promise<string> {
    this.used = true;
    this.#phase = 'head';
    this.#headLen = 0;
    this.#seen = 0;
    this.#expected = 0;
    this.socket.setTimeout(timeoutMs);
    return new Promise((resolve, reject) => {
      this.#onHead = (r) => (r instanceof Error ? reject(r) : resolve(r));
      if (this.#error) this.#fail(this.#error);
      else {
        // Reading may still be paused after the last answer's head (its body came with it).
        this.socket.resume();
        this.socket.write(text);
      }
    });
  }

  /**
   * Reads the body (`expected` bytes) into `dest[at, at + length)` after
   * skipping `skip` bytes of it; resolves when that range is in or the body
   * ended early (then `seen < expected`), rejects on a broken connection.
   */
  body(
    expected: number,
    dest: Uint8Array,
    at: number,
    skip: number,
    length: number,
    onBytes: ((n: number) => void) | undefined,
  ): Promise<void> {
    this.#expected = expected;
    this.#dest = dest;
    this.#destAt = at;
    this.#destEnd = at + length;
    this.#skip = skip;
    this.#onBytes = onBytes;
    this.#phase = 'body';
    const early = this.#headLen - this.#headEnd;
    return new Promise((resolve, reject) => {
      this.#onBody = (err) => (err ? reject(err) : resolve());
      if (early > expected) {
        // Bytes past the Content-Length came with the head: nothing of this answer is to be trusted.
        this.destroy(new NetError('EPROTO', 'the server sent more than its Content-Length'));
        return;
      }
      this.#seen = early;
      this.#take(this.#buf.subarray(this.#headEnd, this.#headEnd + early));
      if (this.#error) this.#fail(this.#error);
      else if (!this.#settle()) this.socket.resume();
    });
  }

  release(): void {
    this.#phase = 'idle';
    this.#dest = undefined;
    this.#onBytes = undefined;
  }

  destroy(err?: Error): void {
    this.reusable = false;
    this.socket.destroy(err);
  }

  #take(bytes: Uint8Array): void {
    let b = bytes;
    if (this.#skip > 0) {
      const s = Math.min(this.#skip, b.byteLength);
      this.#skip -= s;
      b = b.subarray(s);
    }
    const n = Math.min(this.#destEnd - this.#destAt, b.byteLength);
    if (n <= 0) return;
    this.#dest!.set(n === b.byteLength ? b : b.subarray(0, n), this.#destAt);
    this.#destAt += n;
    this.#onBytes?.(n);
  }

  /** Settles the body when the caller's range is complete or the body is over. */
  #settle(): boolean {
    const cb = this.#onBody;
    if (!cb) return false;
    const full = this.#destAt === this.#destEnd;
    const ended = this.#seen === this.#expected;
    if (!full && !ended) return false;
    // A body longer than the range (a server that ignored Range): the rest is not read.
    if (!ended) this.reusable = false;
    this.#onBody = undefined;
    this.#phase = 'idle';
    cb(undefined);
    return true;
  }

  #nextBuffer(): Uint8Array {
    if (this.#phase === 'body' && this.#skip === 0) {
      const want = Math.min(this.#destEnd - this.#destAt, this.#expected - this.#seen);
      if (want > 0) {
        this.#offered = 'dest';
        return this.#dest!.subarray(this.#destAt, this.#destAt + want);
      }
    }
    if (this.#phase === 'head' && this.#headLen < HEAD_MAX) {
      this.#offered = 'head';
      return this.#buf.subarray(this.#headLen, HEAD_MAX);
    }
    this.#offered = 'scratch';
    const room = this.#phase === 'body' ? Math.min(SCRATCH, this.#expected - this.#seen) : SCRATCH;
    return this.#buf.subarray(HEAD_MAX, HEAD_MAX + Math.max(1, room));
  }

  #onRead(n: number): boolean {
    if (this.#phase === 'head') {
      const from = this.#headLen;
      if (this.#offered !== 'head') {
        // The first read after a request landed where the idle socket's reads go.
        if (from + n > HEAD_MAX) {
          this.destroy(new NetError('EPROTO', 'the answer head is too large'));
          return false;
        }
        this.#buf.copyWithin(from, HEAD_MAX, HEAD_MAX + n);
      }
      this.#headLen += n;
      const end = findHeadEnd(this.#buf, from, this.#headLen);
      if (end >= 0) {
        this.#headEnd = end;
        this.#phase = 'wait';
        const cb = this.#onHead;
        this.#onHead = undefined;
        cb?.(Buffer.from(this.#buf.buffer, this.#buf.byteOffset, end).toString('latin1'));
        // Paused until the caller says where the body goes (or drops the connection).
        return this.#phase !== 'wait';
      }
      if (this.#headLen >= HEAD_MAX) this.destroy(new NetError('EPROTO', 'the answer head is too large'));
      return true;
    }
    if (this.#phase !== 'body') {
      // Bytes with no request waiting for them: the connection cannot be trusted.
      this.destroy(new NetError('EPROTO', 'the server sent bytes no request asked for'));
      return false;
    }
    if (n > this.#expected - this.#seen) {
      // More than the Content-Length (a scratch read can hold more): never data, and the read fails.
      this.destroy(new NetError('EPROTO', 'the server sent more than its Content-Length'));
      return false;
    }
    this.#seen += n;
    if (this.#offered === 'dest') {
      this.#destAt += n;
      this.#onBytes?.(n);
    } else {
      this.#take(this.#buf.subarray(HEAD_MAX, HEAD_MAX + n));
    }
    this.#settle();
    return true;
  }

  #fail(err: Error): void {
    this.reusable = false;
    this.#error ??= err;
    const h = this.#onHead;
    this.#onHead = undefined;
    h?.(this.#error);
    const b = this.#onBody;
    if (b) {
      this.#onBody = undefined;
      this.#phase = 'idle';
      // A body that just stopped comes back short and is reported as truncated, never data;
      // an abort or a protocol violation fails the read.
      const e = this.#error as Error & { code?: string };
      b(e.name === 'AbortError' || e.code === 'EPROTO' ? e : undefined);
    }
  }
}

function hasControlCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function findHeadEnd(b: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(3, from); i < to; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i + 1;
  }
  return -1;
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
  readonly #base: string;
  readonly #idle: Conn[] = [];
  #open = 0;
  readonly #waiters: (() => void)[] = [];
  #closed = false;

  constructor(o: DirectGetOptions) {
    this.#o = o;
    const u = new URL(o.endpoint);
    if (u.protocol !== 'http:')
      throw new DirectUnsupported(`direct GETs need an http: endpoint, not ${u.protocol}`);
    this.#host = u.hostname.replace(/^\[|\]$/g, '');
    this.#port = u.port ? Number(u.port) : 80;
    this.#hostHeader = u.host;
    this.#base = u.pathname.replace(/\/+$/, '');
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
    const path = `${this.#base}/${this.#o.bucket}/${encodeKey(key)}`;
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
      protocol: 'http:',
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
        head = parseHead(await conn.request(text, this.#o.requestTimeoutMs));
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
      Body: new DirectBody(conn, this, length, signal),
    };
  }

  async #acquire(signal: AbortSignal | undefined): Promise<Conn> {
    for (;;) {
      if (this.#closed) throw new TierError('CLOSED', 'the S3 tier was closed', { retryable: false });
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
        return new Conn(this.#host, this.#port, this.#o.connectionTimeoutMs);
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
    if (complete && conn.alive && !this.#closed) {
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
