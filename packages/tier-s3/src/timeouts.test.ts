import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { isTierError, type TierError } from '@tierkit/tier-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { S3Tier, type S3TierOptions } from './index.js';
import {
  blackHole,
  makeCert,
  type RawRequest,
  type RawServer,
  rawServer,
  type TestCert,
} from './test-servers.js';

/**
 * Every operation against a server that accepts and never answers, one that
 * stalls in the middle of a body, one that trickles (never idle, never done)
 * and one that never completes a handshake ends with a retryable UNAVAILABLE
 * naming the timeout — on both GET paths and over TLS — and the SDK prints nothing.
 */

let cert: TestCert | undefined;
const servers: RawServer[] = [];
const tiers: S3Tier[] = [];
const warnings: string[] = [];

beforeAll(async () => {
  cert = await makeCert();
  // Everything the SDK (or anything else) says on the console or stderr while these run.
  const record = (...args: unknown[]) => {
    warnings.push(args.map(String).join(' '));
  };
  vi.spyOn(console, 'warn').mockImplementation(record);
  vi.spyOn(console, 'error').mockImplementation(record);
  const write = process.stderr.write.bind(process.stderr);
  vi.spyOn(process.stderr, 'write').mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
    warnings.push(String(chunk));
    return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write);
});
afterEach(async () => {
  for (const t of tiers.splice(0)) await t.close();
  for (const s of servers.splice(0)) await s.close();
});
afterAll(() => {
  vi.restoreAllMocks();
  // Nothing from the SDK's handler reached stderr or the console in any test here.
  expect(warnings.filter((w) => /node-http-handler|exceeded|WARN/.test(w))).toEqual([]);
});

interface Path {
  readonly name: string;
  readonly tls: boolean;
  readonly directGets: boolean;
}
const PATHS: readonly Path[] = [
  { name: 'http, direct GETs', tls: false, directGets: true },
  { name: 'http, SDK GETs', tls: false, directGets: false },
  { name: 'https, direct GETs', tls: true, directGets: true },
  { name: 'https, SDK GETs', tls: true, directGets: false },
];

async function serve(path: Path, answer: (req: RawRequest, socket: Socket) => void): Promise<RawServer> {
  const s = await rawServer(answer, path.tls ? cert : undefined);
  servers.push(s);
  return s;
}

function tier(endpoint: string, path: Path, extra: Partial<S3TierOptions> = {}): S3Tier {
  const t = new S3Tier({
    bucket: 'bkt',
    endpoint,
    credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
    directGets: path.directGets,
    ...(path.tls && cert ? { ca: cert.cert } : {}),
    idleTimeoutMs: 150,
    partSize: 64 * 1024,
    retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2 },
    ...extra,
  });
  tiers.push(t);
  return t;
}

async function drain(s: Readable | undefined): Promise<number> {
  let n = 0;
  for await (const c of s!) n += (c as Uint8Array).byteLength;
  return n;
}

/** Every operation of the tier, each to be ended by a timeout. */
const OPS: Record<string, (t: S3Tier) => Promise<unknown>> = {
  stat: (t) => t.stat('k'),
  read: (t) => t.read('k'),
  readRange: (t) => t.read('k', { range: { offset: 10, length: 100 } }),
  readInto: (t) => t.readInto('k', new Uint8Array(200_000)),
  readStream: (t) => t.readStream('k').then(drain),
  write: (t) => t.write('k', new Uint8Array(1000)),
  writeMultipart: (t) => t.write('k', new Uint8Array(6 * 1024 * 1024), {}),
  delete: (t) => t.delete('k'),
  list: async (t) => {
    for await (const _ of t.list('')) {
      // drained
    }
  },
};

function expectTimeout(err: unknown, kind: string, what = ''): void {
  expect(isTierError(err), `${what} ${String(err)}`).toBe(true);
  const e = err as TierError;
  expect(e.code, `${what} ${e.message}`).toBe('UNAVAILABLE');
  expect(e.retryable, what).toBe(true);
  expect(e.details?.timeout, `${what} ${e.message}`).toBe(kind);
  expect(e.message).toMatch(/timed out/);
}

/** Runs the operations at once, each on its own tier, and gives each one's outcome. */
async function allOps(ops: readonly string[], make: () => S3Tier): Promise<[op: string, outcome: unknown][]> {
  return Promise.all(
    ops.map(
      async (op) =>
        [
          op,
          await OPS[op]!(make()).then(
            (v) => v ?? 'no error',
            (e: unknown) => e,
          ),
        ] as [string, unknown],
    ),
  );
}

const SIZE = 200_000;

/** An answer to a GET (206 for its range) or any other request (200 with an XML body), `send` bytes of it sent. */
function startAnswer(req: RawRequest, socket: Socket, send: number): number {
  const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get('range') ?? '');
  if (req.method === 'GET' && m) {
    const from = Number(m[1]);
    const to = Math.min(Number(m[2]), SIZE - 1);
    const length = to - from + 1;
    socket.write(
      `HTTP/1.1 206 Partial Content\r\nContent-Length: ${length}\r\nContent-Range: bytes ${from}-${to}/${SIZE}\r\n` +
        `ETag: "0123456789abcdef0123456789abcdef"\r\n\r\n`,
    );
    // Never the whole body: at most half of it.
    socket.write(Buffer.alloc(Math.min(send, length >> 1), 7));
    return length;
  }
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>bkt</Name>${' '.repeat(5000)}</ListBucketResult>`;
  socket.write(
    `HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: ${xml.length}\r\nETag: "x"\r\n\r\n`,
  );
  socket.write(xml.slice(0, Math.min(send, xml.length >> 1)));
  return xml.length;
}

describe.each(PATHS)('timeouts, $name', (path) => {
  const skip = () => path.tls && !cert;

  it(`every operation (${Object.keys(OPS).join(', ')}) against a server that accepts and never answers: idle timeout`, async (ctx) => {
    if (skip()) return ctx.skip('skipped: openssl is not installed, no certificate for TLS');
    const s = await serve(path, () => {});
    const outcomes = await allOps(Object.keys(OPS), () => tier(s.endpoint, path));
    for (const [op, err] of outcomes) expectTimeout(err, 'idle', op);
    // Each retried once (attempts: 2), on a fresh connection each time. Connections, not
    // request heads: over TLS a loaded machine can time out an attempt in its handshake.
    expect(s.connections).toBeGreaterThanOrEqual(2 * outcomes.length);
  });

  it('read, readRange, readInto, readStream, list against a server that stalls mid-body: idle timeout, never data', async (ctx) => {
    if (skip()) return ctx.skip('skipped: openssl is not installed, no certificate for TLS');
    const s = await serve(path, (req, socket) => {
      startAnswer(req, socket, 1000);
    });
    const outcomes = await allOps(['read', 'readRange', 'readInto', 'readStream', 'list'], () =>
      tier(s.endpoint, path),
    );
    for (const [op, err] of outcomes) expectTimeout(err, 'idle', op);
  });

  it('a body that trickles (never idle) ends at the request deadline', async (ctx) => {
    if (skip()) return ctx.skip('skipped: openssl is not installed, no certificate for TLS');
    const timers = new Set<NodeJS.Timeout>();
    const s = await serve(path, (req, socket) => {
      const length = startAnswer(req, socket, 20);
      let sent = 10;
      const t = setInterval(() => {
        if (sent >= length || socket.destroyed) return clearInterval(t);
        socket.write(Buffer.alloc(1, 7));
        sent++;
      }, 20);
      timers.add(t);
      socket.on('close', () => clearInterval(t));
    });
    try {
      const t = tier(s.endpoint, path, { requestDeadlineMs: 400, idleTimeoutMs: 10_000 });
      expectTimeout(await t.read('k').catch((e: unknown) => e), 'deadline');
      expectTimeout(await OPS.list!(t).catch((e: unknown) => e), 'deadline');
    } finally {
      for (const t of timers) clearInterval(t);
    }
  });

  it('a caller abort stays ABORTED (not a timeout), with a deadline set', async (ctx) => {
    if (skip()) return ctx.skip('skipped: openssl is not installed, no certificate for TLS');
    const s = await serve(path, () => {});
    const t = tier(s.endpoint, path, { idleTimeoutMs: 10_000, requestDeadlineMs: 10_000 });
    const ac = new AbortController();
    const p = t.read('k', { signal: ac.signal }).catch((e: unknown) => e);
    setTimeout(() => ac.abort(), 50);
    expect(isTierError(await p, 'ABORTED')).toBe(true);
  });
});

describe('connect timeout', () => {
  it.for(PATHS)('a server that never completes the handshake ($name)', async (path, ctx) => {
    const hole = await blackHole();
    try {
      if (!hole.hangs) {
        return ctx.skip('skipped: this kernel completes (or refuses) connects to a full listen queue');
      }
      const endpoint = path.tls ? hole.endpoint.replace('http:', 'https:') : hole.endpoint;
      const t = tier(endpoint, path, {
        connectTimeoutMs: 200,
        idleTimeoutMs: 60_000,
      });
      expectTimeout(await t.read('k').catch((e: unknown) => e), 'connect');
      expectTimeout(await t.stat('k').catch((e: unknown) => e), 'connect');
    } finally {
      await hole.close();
    }
  });
});

describe('timeout options', () => {
  it('resolve the new names, accept the old ones, refuse nonsense', () => {
    const base = { bucket: 'bkt', endpoint: 'http://127.0.0.1:1' };
    const a = new S3Tier({ ...base, requestTimeoutMs: 1234, connectionTimeoutMs: 55 });
    expect(a.config.idleTimeoutMs).toBe(1234);
    expect(a.config.connectTimeoutMs).toBe(55);
    expect(a.config.requestDeadlineMs).toBe(0);
    const b = new S3Tier({ ...base, idleTimeoutMs: 10, connectTimeoutMs: 20, requestDeadlineMs: 30 });
    expect([b.config.idleTimeoutMs, b.config.connectTimeoutMs, b.config.requestDeadlineMs]).toEqual([
      10, 20, 30,
    ]);
    expect(() => new S3Tier({ ...base, idleTimeoutMs: -1 })).toThrow(/idleTimeoutMs/);
    expect(() => new S3Tier({ ...base, requestDeadlineMs: 2 ** 40 })).toThrow(/requestDeadlineMs/);
    expect(() => new S3Tier({ ...base, ca: 'not a certificate' })).toThrow(/ca must be/);
    void a.close();
    void b.close();
  });
});
