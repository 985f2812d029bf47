/**
 * Aborts through [fs cache over S3] against a server that stalls every GET in
 * the middle of its body until the test lets it go: a reader's abort ends its
 * own wait, the fill's GETs are aborted when no reader wants them, and another
 * reader of the same key still gets every byte — on both GET paths and over TLS.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStack, isTierError } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { FsTier } from '@tierkit/tier-fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { S3Tier } from './index.js';
import { makeCert, type RawServer, rawServer, type TestCert } from './test-servers.js';

const KiB = 1024;
const data = patternBytes(2 * 1024 * KiB + 3, 17);
const etag = `"${createHash('md5').update(data).digest('hex')}"`;
const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

let cert: TestCert | undefined;
const dirs: string[] = [];
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  cert = await makeCert();
});
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** GETs answer half their range, then wait for `release()`; HEADs answer at once. */
interface StallingOrigin {
  readonly server: RawServer;
  /** GET connections still open. */
  readonly openGets: Set<Socket>;
  /** GET connections the client closed before `release()`: requests it gave up on. */
  closedEarly: number;
  release(): void;
}

async function stallingOrigin(tls: TestCert | undefined): Promise<StallingOrigin> {
  const held: (() => void)[] = [];
  let released = false;
  const o: StallingOrigin = {
    openGets: new Set(),
    closedEarly: 0,
    release() {
      released = true;
      for (const go of held.splice(0)) go();
    },
    server: undefined as unknown as RawServer,
  };
  const server = await rawServer((req, socket) => {
    const head = `ETag: ${etag}\r\nLast-Modified: Sat, 21 Nov 2026 10:00:00 GMT\r\n`;
    if (req.method === 'HEAD') {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${data.byteLength}\r\n${head}\r\n`);
      return;
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get('range') ?? '');
    if (req.method !== 'GET' || !m) {
      socket.end('HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const from = Number(m[1]);
    const to = Math.min(Number(m[2]), data.byteLength - 1);
    const body = data.subarray(from, to + 1);
    o.openGets.add(socket);
    socket.once('close', () => {
      o.openGets.delete(socket);
      if (!released) o.closedEarly++;
    });
    socket.write(
      `HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.byteLength}\r\n` +
        `Content-Range: bytes ${from}-${to}/${data.byteLength}\r\n${head}\r\n`,
    );
    const half = body.byteLength >> 1;
    socket.write(body.subarray(0, half));
    const rest = () => {
      if (!socket.destroyed) socket.write(body.subarray(half));
    };
    if (released) rest();
    else held.push(rest);
  }, tls);
  (o as { server: RawServer }).server = server;
  cleanup.push(() => server.close());
  return o;
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
}

const PATHS = [
  { name: 'http, direct GETs', tls: false, directGets: true },
  { name: 'http, SDK GETs', tls: false, directGets: false },
  { name: 'https, direct GETs', tls: true, directGets: true },
  { name: 'https, SDK GETs', tls: true, directGets: false },
] as const;

describe.each(PATHS)('stack aborts, $name', (path) => {
  async function setup() {
    const origin = await stallingOrigin(path.tls ? cert : undefined);
    const s3 = new S3Tier({
      name: 's3',
      bucket: 'bkt',
      endpoint: origin.server.endpoint,
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
      directGets: path.directGets,
      ...(path.tls && cert ? { ca: cert.cert } : {}),
      // Long enough never to fire here: only aborts end these waits.
      idleTimeoutMs: 60_000,
    });
    const root = await mkdtemp(join(tmpdir(), 'tierkit-s3-aborts-'));
    dirs.push(root);
    const cache = new FsTier({ root, name: 'cache' });
    const stack = createStack([cache, s3], { blockSize: 256 * KiB });
    cleanup.push(() => stack.close());
    return { origin, cache, stack };
  }

  it('a read aborted mid-fill settles ABORTED while the server still stalls; its GETs are aborted', async (ctx) => {
    if (path.tls && !cert) return ctx.skip('skipped: openssl is not installed, no certificate for TLS');
    const { origin, cache, stack } = await setup();
    const ac = new AbortController();
    const p = stack.read('k', { signal: ac.signal });
    await until(() => origin.openGets.size > 0);
    ac.abort();
    // The server never finishes a body here: only a local abort can settle the read.
    expect(isTierError(await p.catch((e: unknown) => e), 'ABORTED')).toBe(true);
    // Nobody else wants the fill: its GETs are aborted (their connections closed by the client).
    await until(() => origin.openGets.size === 0);
    expect(await cache.stat('k')).toBeUndefined();
    // The next reader starts over and gets every byte.
    origin.release();
    expect(same(await stack.read('k'), data)).toBe(true);
  });

  it('two readers of one key: aborting one leaves the other byte-exact', async (ctx) => {
    if (path.tls && !cert) return ctx.skip('skipped: openssl is not installed, no certificate for TLS');
    const { origin, cache, stack } = await setup();
    const ac = new AbortController();
    const a = stack.read('k', { signal: ac.signal });
    const target = new Uint8Array(data.byteLength);
    const b = stack.readInto('k', target);
    await until(() => origin.openGets.size > 0);
    ac.abort();
    expect(isTierError(await a.catch((e: unknown) => e), 'ABORTED')).toBe(true);
    // B still wants the fill: none of its GETs may be given up (a cancelled fill would close them).
    await new Promise((r) => setTimeout(r, 200));
    expect(origin.closedEarly).toBe(0);
    expect(origin.openGets.size).toBeGreaterThan(0);
    origin.release();
    expect(await b).toBe(data.byteLength);
    expect(same(target, data)).toBe(true);
    expect(same(await cache.read('k'), data)).toBe(true);
  });
});
