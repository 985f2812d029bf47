/**
 * Test helpers for tierkit's S3 tier: a local S3 server (s3rver, on 127.0.0.1)
 * and a fault-injecting, bandwidth-shaping HTTP proxy in front of it.
 * s3rver is an optional peer dependency, resolved only when `startLocalS3` runs.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createRequire } from 'node:module';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
  connect as netConnect,
  type Socket,
} from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export { makeTestCert, type TestCert } from './cert.js';

/** s3rver's built-in account. */
export const LOCAL_S3_CREDENTIALS = Object.freeze({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });

export interface LocalS3 {
  readonly endpoint: string;
  readonly port: number;
  readonly directory: string;
  close(): Promise<void>;
}

export interface StartLocalS3Options {
  /** Where objects are kept; default a fresh temporary directory, removed on close. */
  readonly directory?: string;
  /** Buckets to create. */
  readonly buckets?: readonly string[];
  /** Serve https with this key and certificate (PEM); the endpoint is then `https://127.0.0.1:port`. */
  readonly tls?: { readonly key: string; readonly cert: string };
}

// The server runs in its own process: s3rver pages ListObjectsV2 with DES-encrypted
// continuation tokens, which OpenSSL 3 only offers with the legacy provider; and
// its store writes objects in place, so the child makes puts atomic (temp file,
// rename, metadata, under a per-key lock that reads share), as real stores are.
const CHILD = `
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const path = require('node:path');
const crypto = require('node:crypto');
const opts = JSON.parse(process.argv[process.argv.length - 1]);
const S3rver = require(opts.module);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: opts.directory,
  configureBuckets: opts.buckets.map((name) => ({ name })), ...(opts.tls || {}) });
const store = server.store;
const locks = new Map();
function locked(id, fn) {
  const prev = locks.get(id) || Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => {});
  locks.set(id, tail);
  tail.then(() => { if (locks.get(id) === tail) locks.delete(id); });
  return run;
}
const getObject = store.getObject.bind(store);
store.getObject = (bucket, key, o) => locked(bucket + '/' + key, () => getObject(bucket, key, o));
store.putObject = async (object) => {
  const target = store.getResourcePath(object.bucket, object.key, 'object');
  await fsp.mkdir(path.dirname(target), { recursive: true });
  const tmp = store.getResourcePath(object.bucket, object.key, 'tmp-' + crypto.randomBytes(6).toString('hex'));
  const md5 = crypto.createHash('md5');
  let size = 0;
  await new Promise((resolve, reject) => {
    const out = fs.createWriteStream(tmp).on('error', reject).on('finish', resolve);
    if (Buffer.isBuffer(object.content)) { md5.update(object.content); size = object.content.length; out.end(object.content); return; }
    object.content.on('error', reject);
    object.content.on('data', (c) => { md5.update(c); size += c.length; });
    object.content.pipe(out);
  });
  const digest = md5.digest('hex');
  await locked(object.bucket + '/' + object.key, async () => {
    await fsp.rename(tmp, target);
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
  });
  return { size, md5: digest };
};
server.run().then((addr) => process.send({ port: addr.port }), (err) => { console.error(err); process.exit(1); });
process.on('disconnect', () => process.exit(0));
`;

/** Starts s3rver on 127.0.0.1 at a free port, silently, in a child process. */
export async function startLocalS3(options: StartLocalS3Options = {}): Promise<LocalS3> {
  let module: string;
  try {
    module = createRequire(join(process.cwd(), 'index.js')).resolve('s3rver');
  } catch {
    try {
      module = createRequire(import.meta.url).resolve('s3rver');
    } catch (err) {
      throw new Error('startLocalS3 needs the optional peer dependency s3rver: npm install -D s3rver', {
        cause: err,
      });
    }
  }
  const owned = options.directory === undefined;
  const directory = options.directory ?? (await mkdtemp(join(tmpdir(), 'tierkit-s3rver-')));
  const args = JSON.stringify({
    module,
    directory,
    buckets: options.buckets ?? [],
    ...(options.tls ? { tls: { key: options.tls.key, cert: options.tls.cert } } : {}),
  });
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', CHILD, args], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: { port: number }) => resolve(m.port));
      child.once('exit', (code) => reject(new Error(`s3rver exited (${code}) before listening: ${stderr}`)));
      child.once('error', reject);
    });
  } catch (err) {
    if (owned) await rm(directory, { recursive: true, force: true });
    throw err;
  }
  return {
    endpoint: `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    directory,
    async close() {
      if (child.exitCode === null) {
        child.kill();
        await exited;
      }
      if (owned) await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Client settings for a local S3 server: path style, test credentials, no streaming checksums. */
export function localS3ClientConfig(endpoint: string) {
  return {
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { ...LOCAL_S3_CREDENTIALS },
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  };
}

// ------------------------------------------------------------------ fault proxy

export type Fault =
  /** Answer with this status and an S3 error body, without forwarding. */
  | { readonly kind: 'status'; readonly status: number; readonly code?: string }
  /** Destroy the client connection: before forwarding, or after `afterBytes` of the response body. */
  | { readonly kind: 'drop'; readonly afterBytes?: number }
  /** Send the headers (with the full Content-Length), then only `fraction` of the body, then close. */
  | { readonly kind: 'truncate'; readonly fraction?: number }
  /** Forward the answer whole, with one byte of its body inverted (at `at`, default the middle). */
  | { readonly kind: 'flip'; readonly at?: number };

export interface RequestInfo {
  /** 0-based index of the request through this proxy. */
  readonly n: number;
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
}

/** Seeded random faults: each rate is a probability per request (0–1). */
export interface RandomFaultPlan {
  readonly seed: number;
  readonly status500?: number;
  readonly status503?: number;
  readonly drop?: number;
  readonly truncate?: number;
  /** Only requests with these methods get faults (default: all). */
  readonly methods?: readonly string[];
}

/**
 * A deterministic plan: a function of the request (it may wait, to pause a
 * request while a test changes the origin), a list indexed by request number,
 * or seeded random rates.
 */
export type FaultPlan =
  | ((req: RequestInfo) => Fault | undefined | Promise<Fault | undefined>)
  | readonly (Fault | undefined)[]
  | RandomFaultPlan;

export interface Shaping {
  /** Bytes per second per connection, each direction. */
  readonly bytesPerSecond?: number;
  /** Added before each request is forwarded. */
  readonly latencyMs?: number;
}

export interface FaultProxyStats {
  requests: number;
  /** Requests received and not yet answered in full (or cut), now and at most so far. */
  inFlight: number;
  maxInFlight: number;
  /** The same for GET requests only. */
  getsInFlight: number;
  maxGetsInFlight: number;
  faults: { status: number; drop: number; truncate: number; flip: number };
}

export interface FaultProxy {
  readonly endpoint: string;
  readonly port: number;
  readonly stats: FaultProxyStats;
  setPlan(plan: FaultPlan | undefined): void;
  setShaping(shaping: Shaping | undefined): void;
  close(): Promise<void>;
}

export interface StartFaultProxyOptions {
  /** The upstream S3 endpoint, e.g. `http://127.0.0.1:4568`. */
  readonly target: string;
  readonly plan?: FaultPlan;
  readonly shaping?: Shaping;
}

/** mulberry32: a tiny seeded PRNG, so a fault run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Listens on 127.0.0.1 at a free port; resolves with the port. */
async function listenOnLoopback(server: NetServer): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** A token bucket for one connection and direction. */
class Bucket {
  #tokens: number;
  #last = performance.now();
  constructor(
    readonly rate: number,
    readonly burst: number,
  ) {
    this.#tokens = burst;
  }
  /** Takes `n` bytes; returns how long to wait (ms) before sending more. */
  take(n: number): number {
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    this.#tokens -= n;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.rate) * 1000;
  }
}

/** Pauses `src` until `dst` drained (when its last write was refused) and `waitMs` passed. */
function holdBack(
  src: { pause(): unknown; resume(): unknown },
  dst: { once(e: 'drain', f: () => void): unknown },
  ok: boolean,
  waitMs: number,
): void {
  if (ok && waitMs <= 0) return;
  src.pause();
  let pending = (ok ? 0 : 1) + (waitMs > 0 ? 1 : 0);
  const resume = () => {
    if (--pending === 0) src.resume();
  };
  if (!ok) dst.once('drain', resume);
  if (waitMs > 0) setTimeout(resume, waitMs);
}

/**
 * Copies `src` to `dst`, honouring back-pressure and a token bucket: when the
 * bucket runs dry the source is paused (never buffered) until tokens are back.
 * `limit` stops after that many bytes and calls `onLimit`.
 */
function shapedPipe(
  src: IncomingMessage,
  dst: { write(c: Buffer): boolean; once(e: 'drain', f: () => void): unknown; end(): unknown },
  bucket: Bucket | undefined,
  limit: number | undefined,
  onLimit: () => void,
  flipAt?: number,
): void {
  let sent = 0;
  let stopped = false;
  src.on('data', (chunk: Buffer) => {
    if (stopped) return;
    let c = chunk;
    if (flipAt !== undefined && flipAt >= sent && flipAt < sent + c.length) {
      c = Buffer.from(c);
      c[flipAt - sent] = c[flipAt - sent]! ^ 0xff;
    }
    if (limit !== undefined && sent + c.length >= limit) {
      c = c.subarray(0, limit - sent);
      stopped = true;
    }
    sent += c.length;
    const ok = c.length > 0 ? dst.write(c) : true;
    if (stopped) {
      src.destroy();
      onLimit();
      return;
    }
    holdBack(src, dst, ok, bucket ? bucket.take(c.length) : 0);
  });
  src.on('end', () => {
    if (!stopped) dst.end();
  });
}

function s3ErrorBody(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>tierkit-fault</RequestId></Error>`;
}

/**
 * Starts an HTTP proxy on 127.0.0.1 in front of `target` that injects faults
 * and shapes bandwidth/latency per connection. Requests keep their Host header
 * so SigV4 signatures made for the proxy's address still verify upstream.
 */
export async function startFaultProxy(options: StartFaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  let plan = options.plan;
  let shaping = options.shaping;
  let random: (() => number) | undefined;
  const setPlan = (p: FaultPlan | undefined) => {
    plan = p;
    random = p && typeof p === 'object' && !Array.isArray(p) ? prng((p as RandomFaultPlan).seed) : undefined;
  };
  setPlan(plan);
  const stats: FaultProxyStats = {
    requests: 0,
    inFlight: 0,
    maxInFlight: 0,
    getsInFlight: 0,
    maxGetsInFlight: 0,
    faults: { status: 0, drop: 0, truncate: 0, flip: 0 },
  };
  const upstreamAgent = new Agent({ keepAlive: true, maxSockets: 1024 });
  const buckets = new WeakMap<Socket, { down: Bucket; up: Bucket } | null>();
  const bucketsFor = (socket: Socket) => {
    const rate = shaping?.bytesPerSecond;
    if (!rate) return undefined;
    let b = buckets.get(socket);
    if (!b || b.down.rate !== rate) {
      // A burst of ~10 ms of traffic keeps timers coarse without breaking the average.
      const burst = Math.max(16 * 1024, rate / 100);
      b = { down: new Bucket(rate, burst), up: new Bucket(rate, burst) };
      buckets.set(socket, b);
    }
    return b;
  };

  const choose = async (info: RequestInfo): Promise<Fault | undefined> => {
    const p = plan;
    if (!p) return undefined;
    if (typeof p === 'function') return p(info);
    if (Array.isArray(p)) return p[info.n];
    const r = p as RandomFaultPlan;
    if (r.methods && !r.methods.includes(info.method)) return undefined;
    const x = random!();
    const cuts: [number, () => Fault][] = [
      [r.status500 ?? 0, () => ({ kind: 'status', status: 500, code: 'InternalError' })],
      [r.status503 ?? 0, () => ({ kind: 'status', status: 503, code: 'SlowDown' })],
      [r.drop ?? 0, () => ({ kind: 'drop', afterBytes: Math.floor(random!() * 256 * 1024) })],
      [r.truncate ?? 0, () => ({ kind: 'truncate', fraction: random!() })],
    ];
    let acc = 0;
    for (const [rate, make] of cuts) {
      acc += rate;
      if (x < acc) return make();
    }
    return undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const isGet = req.method === 'GET';
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    if (isGet) stats.maxGetsInFlight = Math.max(stats.maxGetsInFlight, ++stats.getsInFlight);
    res.once('close', () => {
      stats.inFlight--;
      if (isGet) stats.getsInFlight--;
    });
    const info: RequestInfo = {
      n: stats.requests++,
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers: req.headers,
    };
    const fault = await choose(info);
    const latency = shaping?.latencyMs;
    if (latency) await new Promise((r) => setTimeout(r, latency));
    if (fault?.kind === 'status') {
      stats.faults.status++;
      req.resume();
      const body = s3ErrorBody(
        fault.code ?? (fault.status === 503 ? 'SlowDown' : 'InternalError'),
        'injected fault',
      );
      res.writeHead(fault.status, {
        'content-type': 'application/xml',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    if (fault?.kind === 'drop' && fault.afterBytes === undefined) {
      stats.faults.drop++;
      req.socket.destroy();
      return;
    }
    const b = bucketsFor(req.socket);
    const up = httpRequest({
      host: target.hostname,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: upstreamAgent,
    });
    up.on('error', () => req.socket.destroy());
    up.on('response', (ures) => {
      const length = Number(ures.headers['content-length'] ?? Number.NaN);
      let limit: number | undefined;
      if (fault?.kind === 'drop') limit = fault.afterBytes;
      else if (fault?.kind === 'truncate' && Number.isFinite(length) && length > 0) {
        limit = Math.min(length - 1, Math.floor(length * (fault.fraction ?? 0.5)));
      }
      if (limit !== undefined && Number.isFinite(length) && limit >= length) limit = undefined;
      if (fault?.kind === 'drop' && limit === undefined) {
        // The body is shorter than the drop point: drop before the headers instead.
        stats.faults.drop++;
        ures.destroy();
        req.socket.destroy();
        return;
      }
      if (limit !== undefined) stats.faults[fault!.kind === 'drop' ? 'drop' : 'truncate']++;
      let flipAt: number | undefined;
      if (fault?.kind === 'flip' && Number.isFinite(length) && length > 0) {
        flipAt = Math.min(length - 1, fault.at ?? Math.floor(length / 2));
        stats.faults.flip++;
      }
      res.writeHead(ures.statusCode ?? 502, ures.statusMessage, ures.rawHeaders);
      res.flushHeaders();
      shapedPipe(
        ures,
        res,
        b?.down,
        limit,
        () => {
          // Flush what was written, then cut: a drop resets, a truncation closes cleanly.
          if (fault?.kind === 'drop') res.socket?.destroy();
          else res.socket?.end();
        },
        flipAt,
      );
    });
    shapedPipe(req, up, b?.up, undefined, () => {});
  };

  const server = createServer({ keepAlive: true }, (req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  const port = await listenOnLoopback(server);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    stats,
    setPlan,
    setShaping(s) {
      shaping = s;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      upstreamAgent.destroy();
    },
  };
}

export interface ShapingProxy {
  readonly endpoint: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface StartShapingProxyOptions {
  /** The upstream endpoint, e.g. `http://127.0.0.1:4568`. */
  readonly target: string;
  /** Bytes per second per connection, server to client. */
  readonly bytesPerSecond: number;
  /** Added to every request on its way to the server. */
  readonly latencyMs: number;
}

/**
 * A TCP-level proxy on 127.0.0.1 that behaves like one connection to a distant
 * object store: each connection's answers are held to `bytesPerSecond`, and
 * every byte the client sends reaches the server `latencyMs` later (a GET is
 * one small write, so that is the latency per request). It parses nothing, so
 * it costs a fraction of the CPU of the HTTP-level fault proxy, which on a
 * 2-core machine had become the limit of the runs measured through it.
 */
export async function startShapingProxy(options: StartShapingProxyOptions): Promise<ShapingProxy> {
  const target = new URL(options.target);
  const port = Number(target.port || 80);
  const rate = options.bytesPerSecond;
  const open = new Set<Socket>();
  const server = createNetServer((client) => {
    const upstream = netConnect({ host: target.hostname, port, noDelay: true });
    client.setNoDelay(true);
    open.add(client);
    open.add(upstream);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    // Client to server: each write is delivered latencyMs after it arrived, in order.
    const queue: { at: number; chunk: Buffer }[] = [];
    let scheduled = false;
    const deliver = () => {
      const now = performance.now();
      while (queue.length > 0 && queue[0]!.at <= now) upstream.write(queue.shift()!.chunk);
      scheduled = queue.length > 0;
      if (scheduled) setTimeout(deliver, queue[0]!.at - now);
    };
    client.on('data', (chunk: Buffer) => {
      queue.push({ at: performance.now() + options.latencyMs, chunk });
      if (!scheduled) {
        scheduled = true;
        setTimeout(deliver, options.latencyMs);
      }
    });
    // Server to client: a token bucket (bursts of ~10 ms of traffic), the server paused while it is dry.
    const bucket = new Bucket(rate, Math.max(16 * 1024, rate / 100));
    upstream.on('data', (chunk: Buffer) => {
      const ok = client.write(chunk);
      holdBack(upstream, client, ok, bucket.take(chunk.length));
    });
  });
  const bound = await listenOnLoopback(server);
  return {
    endpoint: `http://127.0.0.1:${bound}`,
    port: bound,
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
