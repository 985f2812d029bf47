import { execFile } from 'node:child_process';
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
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
const bytes = (d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array =>
  typeof d === 'string'
    ? d
    : d instanceof ArrayBuffer
      ? new Uint8Array(d)
      : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

/** SHA-256 (HMAC with a secret), shaped as the signer's hash constructor. */
class Sha256 {
  readonly #h: Hash | Hmac;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#h = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#h.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#h.digest());
  }
}
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
    // The signature holds for the request as the server received it (path, headers, date).
    const auth = r.headers.get('authorization')!;
    expect(auth).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AK\/\d{8}\/us-east-1\/s3\/aws4_request, SignedHeaders=/,
    );
    const date = r.headers.get('x-amz-date')!;
    const signedNames = /SignedHeaders=([^,]+)/.exec(auth)![1]!.split(';');
    expect(signedNames).toEqual(
      expect.arrayContaining(['host', 'range', 'x-amz-content-sha256', 'x-amz-date']),
    );
    const verifier = new SignatureV4({
      service: 's3',
      region: 'us-east-1',
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
      sha256: Sha256,
      uriEscapePath: false,
      applyChecksum: false,
    });
    const again = await verifier.sign(
      {
        method: 'GET',
        protocol: 'http:',
        hostname: '127.0.0.1',
        path: r.path,
        query: {},
        headers: Object.fromEntries(
          signedNames.filter((h) => h !== 'x-amz-date').map((h) => [h, r.headers.get(h)!]),
        ),
      } as unknown as Parameters<SignatureV4['presign']>[0],
      {
        signingDate: new Date(
          date.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'),
        ),
      },
    );
    expect((again as { headers: Record<string, string> }).headers.authorization).toBe(auth);
    // 3 reads × 5 parts over two sockets at most (concurrency 2), kept alive.
    expect(f.requests.length).toBe(15);
    expect(f.connections).toBeLessThanOrEqual(2);
    await t.close();
  });

  it('serve http and https; are off for an injected client, directGets: false, or unaddressable buckets', async () => {
    expect(tier('https://s3.example.com').directGets).toBe(true);
    expect(tier('https://s3.example.com', { forcePathStyle: false }).directGets).toBe(true);
    expect(tier('http://127.0.0.1:9', { directGets: false }).directGets).toBe(false);
    // An IP has no subdomain for the bucket; a dotted bucket breaks a wildcard certificate.
    expect(tier('http://127.0.0.1:9', { forcePathStyle: false }).directGets).toBe(false);
    expect(
      new S3Tier({ bucket: 'a.b', endpoint: 'https://s3.example.com', forcePathStyle: false }).directGets,
    ).toBe(false);
    expect(
      new S3Tier({ bucket: 'My_Bucket', endpoint: 'https://s3.example.com', forcePathStyle: false })
        .directGets,
    ).toBe(false);
    // AWS itself when the region is known: its regional endpoint, virtual-hosted.
    expect(new S3Tier({ bucket: 'models', region: 'eu-west-1' }).directGets).toBe(true);
    expect(new S3Tier({ bucket: 'models' }).directGets).toBe(false);
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

  it('a server that goes quiet mid-body times out (retryable); bytes past Content-Length fail the read', async () => {
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
    const err2 = await c.read('k', { range: { offset: 0, length: 10 } }).catch((e: unknown) => e);
    expect(isTierError(err2)).toBe(true);
    expect((err2 as Error).message).toMatch(/more than its Content-Length/);
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

  it('never take bytes past Content-Length or a Transfer-Encoding as data', async () => {
    // Content-Length understates the Content-Range, and more bytes follow.
    const over = await fake(({ range }, socket) => {
      const [from] = range!;
      socket.write(
        `HTTP/1.1 206 Partial Content\r\nContent-Length: 1000\r\nContent-Range: bytes ${from}-${from + 65535}/${data.byteLength}\r\nETag: ${etag}\r\n\r\n`,
      );
      socket.write(Buffer.alloc(65536, 0xee));
    });
    const t = tier(over.endpoint, { retry: { attempts: 1 } });
    expect(isTierError(await t.read('k').catch((e: unknown) => e))).toBe(true);
    await t.close();
    // A 200 whose body runs past its Content-Length.
    const long = await fake((_req, socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: ${etag}\r\n\r\n`);
      socket.write(Buffer.alloc(3000, 0xee));
    });
    const l = tier(long.endpoint, { retry: { attempts: 1 } });
    const err = await l.read('k').catch((e: unknown) => e);
    expect(isTierError(err)).toBe(true);
    expect((err as Error).message).toMatch(/Content-Length/);
    await l.close();
    // Content-Length and chunked together: the framing must never reach the caller.
    const both = await fake(({ range }, socket) => {
      const [from, to] = range!;
      const body = data.subarray(from, Math.min(to, data.byteLength - 1) + 1);
      const framed = Buffer.concat([
        Buffer.from(`${body.byteLength.toString(16)}\r\n`),
        body,
        Buffer.from('\r\n0\r\n\r\n'),
      ]);
      socket.write(
        `HTTP/1.1 206 Partial Content\r\nContent-Length: ${framed.byteLength}\r\nTransfer-Encoding: chunked\r\nContent-Range: bytes ${from}-${from + body.byteLength - 1}/${data.byteLength}\r\nETag: ${etag}\r\n\r\n`,
      );
      socket.write(framed);
    });
    const b = tier(both.endpoint, { retry: { attempts: 1 } });
    const got = await b.read('k').catch((e: unknown) => e);
    if (got instanceof Uint8Array) expect(Buffer.compare(got, data)).toBe(0);
    else expect(isTierError(got)).toBe(true);
    expect(b.directGets).toBe(false);
    await b.close();
  });

  it('refuse an ifMatch that would end its header early', async () => {
    const f = await fake(standard);
    const t = tier(f.endpoint);
    const err = await t.read('k', { ifMatch: '"x"\r\n\r\nGET /bkt/other HTTP/1.1' }).catch((e: unknown) => e);
    expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect(f.requests.length).toBe(0);
    await t.close();
  });

  it('leave idle sockets unreferenced: a process that read and did not close exits', async () => {
    const f = await fake(standard);
    // A ref'd idle socket would keep the child alive for the idle timeout (4 s) and let the 2 s timer print.
    // (Asynchronous: the fake server lives in this process.)
    const r = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `import { S3Tier } from '@tierkit/tier-s3';
         const t = new S3Tier({ bucket: 'bkt', endpoint: ${JSON.stringify(f.endpoint)}, credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' } });
         const got = await t.read('k', { range: { offset: 0, length: 10 } });
         console.log('read', got.length, t.directGets);
         setTimeout(() => console.log('still alive'), 2000).unref();`,
        ],
        { encoding: 'utf8', cwd: import.meta.dirname, timeout: 20_000 },
        (_err, stdout, stderr) => resolve({ stdout, stderr }),
      ),
    );
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.stdout).toContain('read 10 true');
    expect(r.stdout).not.toContain('still alive');
  });
});
