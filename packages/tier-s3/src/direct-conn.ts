/**
 * One keep-alive HTTP/1.1 connection of direct GETs, over TCP or TLS, whose
 * reads land where the current request wants them: the answer head in a small
 * buffer, the body straight in the caller's memory (net's `onread`).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';

/** A network failure of ours, shaped as Node's (a `code`), with the timer that ended it if one did. */
export class NetError extends Error {
  readonly code: string;
  /** Which of our timers ended the connection, if one did. */
  readonly timeout: 'connect' | 'idle' | undefined;
  constructor(code: string, message: string, timeout?: 'connect' | 'idle') {
    super(message);
    this.code = code;
    this.timeout = timeout;
  }
}

const HEAD_MAX = 64 * 1024;
/** Scratch for reads that are not the body's final place (skipped bytes, error bodies, the first read after a pause). */
const SCRATCH = 64 * 1024;

type Phase = 'idle' | 'head' | 'wait' | 'body';
type Offered = 'head' | 'scratch' | 'dest';

/**
 * One keep-alive connection, one request at a time. The head is read into a
 * small buffer; the socket then pauses until the caller names the body's
 * memory (`body`), and every later read lands there.
 */
export class Conn {
  readonly socket: Socket | TLSSocket;
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

  constructor(host: string, port: number, connectTimeoutMs: number, tls: TlsOptions | undefined) {
    const onread = { buffer: () => this.#nextBuffer(), callback: (n: number) => this.#onRead(n) };
    // Names under .localhost are loopback (RFC 6761), as browsers and systemd-resolved have them.
    const lookup = host.endsWith('.localhost') ? loopback : undefined;
    this.socket = tls
      ? // Node honours net's `onread` on TLS sockets too (decrypted bytes land in our buffer); its types omit it.
        tlsConnect({ ...tls, host, port, onread, ...(lookup ? { lookup } : {}) } as ConnectionOptions)
      : netConnect({ host, port, noDelay: true, onread, ...(lookup ? { lookup } : {}) });
    if (tls) {
      this.socket.setNoDelay(true);
      // The next connection resumes this session: one round trip and no key exchange.
      this.socket.on('session', (session: Buffer) => tls.onSession?.(session));
    }
    this.ready = new Promise<void>((resolve, reject) => {
      // 0: no connect timeout, as the SDK reads it.
      const t =
        connectTimeoutMs > 0
          ? setTimeout(
              () =>
                this.socket.destroy(
                  new NetError('ETIMEDOUT', `connect to ${host}:${port} timed out`, 'connect'),
                ),
              connectTimeoutMs,
            )
          : undefined;
      // Over TLS the connection is up once the handshake is: the connect timeout covers both.
      this.socket.once(tls ? 'secureConnect' : 'connect', () => {
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
      this.socket.destroy(
        new NetError('ETIMEDOUT', `no bytes from the server for ${this.socket.timeout} ms`, 'idle'),
      ),
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
      // an abort, a timeout or a protocol violation fails the read (as what it is).
      const e = this.#error as Error & { code?: string };
      b(e.name === 'AbortError' || e.code === 'EPROTO' || e.code === 'ETIMEDOUT' ? e : undefined);
    }
  }
}

/** How a connection speaks TLS, and where it leaves its session for the next one. */
export type TlsOptions = ConnectionOptions & { onSession?: (session: Buffer) => void };

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

function loopback(_host: string, options: unknown, cb?: LookupCallback): void {
  const done = (typeof options === 'function' ? options : cb) as LookupCallback;
  const all = typeof options === 'object' && (options as { all?: boolean } | null)?.all === true;
  if (all)
    (done as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [
      { address: '127.0.0.1', family: 4 },
    ]);
  else done(null, '127.0.0.1', 4);
}

function findHeadEnd(b: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(3, from); i < to; i++) {
    if (b[i] === 10 && b[i - 1] === 13 && b[i - 2] === 10 && b[i - 3] === 13) return i + 1;
  }
  return -1;
}
