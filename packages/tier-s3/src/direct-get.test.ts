import { createHash } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { isTierError } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey } from './direct-get.js';
import { S3Tier } from './index.js';

/**
 * A bare HTTP/1.1 server that answers GETs of one object the way `answer` says:
 * the edge cases of a real server (and of broken ones) on demand.
 */
interface Fake {
  readonly endpoint: string;
  readonly connections: number;
  readonly requests: { method: string; path: string; headers: Map<string, string> }[];
  close(): Promise<void>;
}

type Answer = (req: { range: [number, number] | undefined; n: number }, socket: Socket) => void;

const data = patternBytes(300_000, 9);
const etag = `"${createHash('md5').update(data).digest('hex')}"`;

function partial(socket: Socket, from: number, to: number, extra = ''): void {
  const body = data.subarray(from, to + 1);
  socket.write(
    `HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.byteLength}\r\n` +
      `Content-Range: bytes ${from}-${to}/${data.byteLength}\r\nETag: ${etag}\r\n` +
      `Last-Modified: Sat, 21 Nov 2026 10:00:00 GMT\r\n${extra}\r\n`,
  );
  socket.write(body);
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

async function fake(answer: Answer): Promise<Fake> {
  const requests: Fake['requests'] = [];
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    let buf = '';
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const [line, ...rest] = buf.slice(0, end).split('\r\n');
        buf = buf.slice(end + 4);
        const headers = new Map(
          rest.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
        );
        const [method, path] = line!.split(' ');
        requests.push({ method: method!, path: path!, headers });
        const m = /^bytes=(\d+)-(\d+)$/.exec(headers.get('range') ?? '');
        answer({ range: m ? [Number(m[1]), Number(m[2])] : undefined, n: requests.length }, socket);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

function tier(endpoint: string, extra: Partial<ConstructorParameters<typeof S3Tier>[0]> = {}): S3Tier {
  return new S3Tier({
    bucket: 'bkt',
    endpoint,
    credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
    partSize: 64 * 1024,
    concurrency: 2,
    adaptive: false,
    retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
    ...extra,
  });
}

/** A ranged read of 'k' through `t` returns exactly those bytes of the object. */
async function expectRange(t: S3Tier, offset: number, length: number): Promise<void> {
  const got = await t.read('k', { range: { offset, length } });
  expect(Buffer.compare(got!, data.subarray(offset, offset + length))).toBe(0);
}

const standard: Answer = ({ range }, socket) => {
  const [from, to] = range ?? [0, data.byteLength - 1];
  partial(socket, from, Math.min(to, data.byteLength - 1));
};

describe('direct GETs (plain HTTP, bodies read straight into the destination)', () => {
  it('send signed, path-style ranged GETs and reuse their connections', async () => {
    const f = await fake(standard);
    const t = tier(f.endpoint);
    expect(t.directGets).toBe(true);
    const key = 'models/llama 3/weights (1).bin';
    for (let i = 0; i < 3; i++) {
      const got = await t.read(key);
      expect(Buffer.compare(got!, data)).toBe(0);
    }
    const r = f.requests[0]!;
    expect(r.path).toBe(`/bkt/${encodeKey(key)}`);
    expect(r.path).toBe('/bkt/models/llama%203/weights%20%281%29.bin');
    expect(r.headers.get('authorization')).toMatch(/^AWS4-HMAC-SHA256 Credential=AK\//);
    expect(r.headers.get('x-amz-date')).toMatch(/^\d{8}T\d{6}Z$/);
    // 3 reads × 5 parts over two sockets at most (concurrency 2), kept alive.
    expect(f.requests.length).toBe(15);
    expect(f.connections).toBeLessThanOrEqual(2);
    await t.close();
  });

  it('are off for an https endpoint, an injected client, or directGets: false', async () => {
    expect(tier('https://s3.example.com').directGets).toBe(false);
    expect(tier('http://127.0.0.1:9', { directGets: false }).directGets).toBe(false);
    expect(tier('http://127.0.0.1:9', { forcePathStyle: false }).directGets).toBe(false);
    const own = tier('http://127.0.0.1:9');
    expect(tier('http://127.0.0.1:9', { client: own.client }).directGets).toBe(false);
    await own.close();
  });

  it('take a server that ignores Range: the wanted bytes, and the connection is not reused', async () => {
    const f = await fake((_req, socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${data.byteLength}\r\nETag: ${etag}\r\n\r\n`);
      socket.write(data);
    });
    const t = tier(f.endpoint, { partSize: 1024 * 1024 });
    const got = await t.read('k', { range: { offset: 1000, length: 5000 } });
    expect(Buffer.compare(got!, data.subarray(1000, 6000))).toBe(0);
    expect(Buffer.compare((await t.read('k'))!, data)).toBe(0);
    expect(f.connections).toBe(2);
    await t.close();
  });

  it('retry on a new connection when a kept-alive one was closed by the server', async () => {
    const f = await fake((req, socket) => {
      standard(req, socket);
      // Closes after each answer without saying so, as servers do with idle keep-alive sockets.
      socket.end();
    });
    const t = tier(f.endpoint, { retry: { attempts: 1 } });
    for (let i = 0; i < 3; i++) {
      await expectRange(t, 10, 100);
    }
    expect(f.connections).toBe(3);
    await t.close();
  });

  it('map error answers to the S3 codes the tier knows', async () => {
    const xml = (code: string) =>
      `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>nope</Message></Error>`;
    const f = await fake(({ n }, socket) => {
      const [status, code] =
        n === 1 ? [404, 'NoSuchKey'] : n === 2 ? [404, 'NoSuchBucket'] : [403, 'AccessDenied'];
      const body = xml(code as string);
      socket.write(`HTTP/1.1 ${status} X\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    });
    const t = tier(f.endpoint, { retry: { attempts: 1 } });
    expect(await t.read('k')).toBeUndefined();
    const bucket = await t.read('k').catch((e: unknown) => e);
    expect(isTierError(bucket, 'UNAVAILABLE')).toBe(true);
    expect((bucket as Error).message).toMatch(/NoSuchBucket/);
    const denied = await t.read('k').catch((e: unknown) => e);
    expect(isTierError(denied, 'UNAVAILABLE')).toBe(true);
    expect((denied as Error).message).toMatch(/AccessDenied/);
    expect(f.connections).toBe(1); // error bodies were read to their end: the socket stayed usable
    await t.close();
  });

  it('a body cut short is retried, and never data when retries run out', async () => {
    const f = await fake(({ range, n }, socket) => {
      const [from, to] = range!;
      if (n % 2 === 1) {
        const body = data.subarray(from, to + 1);
        socket.write(
          `HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.byteLength}\r\nContent-Range: bytes ${from}-${to}/${data.byteLength}\r\nETag: ${etag}\r\n\r\n`,
        );
        socket.end(body.subarray(0, body.byteLength >> 1));
      } else partial(socket, from, Math.min(to, data.byteLength - 1));
    });
    const t = tier(f.endpoint, { concurrency: 1 });
    expect(Buffer.compare((await t.read('k'))!, data)).toBe(0);
    const once = tier(f.endpoint, { concurrency: 1, retry: { attempts: 1 } });
    const errs = await Promise.all([
      once.read('k').catch((e: unknown) => e),
      once.read('k').catch((e: unknown) => e),
    ]);
    expect(errs.some((e) => isTierError(e) && e.retryable && /truncated/.test(e.message))).toBe(true);
    for (const e of errs) if (e instanceof Uint8Array) expect(Buffer.compare(e, data)).toBe(0);
    await t.close();
    await once.close();
  });

  it('abort mid-body with ABORTED, promptly', async () => {
    const f = await fake(({ range }, socket) => {
      const [from, to] = range!;
      const body = data.subarray(from, to + 1);
      socket.write(
        `HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.byteLength}\r\nContent-Range: bytes ${from}-${to}/${data.byteLength}\r\nETag: ${etag}\r\n\r\n`,
      );
      socket.write(body.subarray(0, 1000)); // and then nothing
    });
    const t = tier(f.endpoint, { requestTimeoutMs: 20_000 });
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(), 100);
    const err = await t.read('k', { signal: ac.signal }).catch((e: unknown) => e);
    expect(isTierError(err, 'ABORTED')).toBe(true);
    expect(Date.now() - started).toBeLessThan(5000);
    await t.close();
  });

  it('a server that goes quiet mid-body times out (retryable), and answers past Content-Length drop the socket', async () => {
    const quiet = await fake(({ range }, socket) => {
      const [from, to] = range!;
      socket.write(
        `HTTP/1.1 206 Partial Content\r\nContent-Length: ${to - from + 1}\r\nContent-Range: bytes ${from}-${to}/${data.byteLength}\r\nETag: ${etag}\r\n\r\n`,
      );
    });
    const t = tier(quiet.endpoint, {
      requestTimeoutMs: 150,
      retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2 },
    });
    const err = await t.read('k').catch((e: unknown) => e);
    expect(isTierError(err)).toBe(true);
    expect((err as { retryable: boolean }).retryable).toBe(true);
    await t.close();

    const chatty = await fake((req, socket) => {
      standard(req, socket);
      socket.write('HTTP/1.1 200 OK\r\n'); // bytes no request asked for
    });
    const c = tier(chatty.endpoint);
    await expectRange(c, 0, 10);
    await new Promise((r) => setTimeout(r, 50));
    await expectRange(c, 5, 10);
    expect(chatty.connections).toBe(2);
    await c.close();
  });

  it('fall back to the SDK for good on an answer they do not take (a chunked body)', async () => {
    const f = await fake(({ range }, socket) => {
      const [from, to] = range ?? [0, data.byteLength - 1];
      const body = data.subarray(from, Math.min(to, data.byteLength - 1) + 1);
      socket.write(
        `HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\nContent-Range: bytes ${from}-${from + body.byteLength - 1}/${data.byteLength}\r\nETag: ${etag}\r\n\r\n`,
      );
      socket.write(`${body.byteLength.toString(16)}\r\n`);
      socket.write(body);
      socket.write('\r\n0\r\n\r\n');
    });
    const t = tier(f.endpoint);
    expect(t.directGets).toBe(true);
    expect(Buffer.compare((await t.read('k'))!, data)).toBe(0);
    expect(t.directGets).toBe(false);
    expect(
      Buffer.compare(
        (await t.read('k', { range: { offset: 7, length: 70_000 } }))!,
        data.subarray(7, 70_007),
      ),
    ).toBe(0);
    await t.close();
  });
});
