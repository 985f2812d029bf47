/**
 * https endpoints: s3rver over TLS with a certificate made here, read through
 * direct GETs (TLS sockets read into the destination) and through the SDK;
 * trust from `ca` or NODE_EXTRA_CA_CERTS, refusal (typed, not retried) without
 * it; keep-alive; virtual-hosted addressing with SNI.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isTierError, type TierError } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Tier, type S3TierOptions } from './index.js';
import { makeCert, rawServer, type TestCert } from './test-servers.js';
import { LOCAL_S3_CREDENTIALS, type LocalS3, startLocalS3 } from './testing/index.js';

const KiB = 1024;
let cert: TestCert | undefined;
let s3: LocalS3 | undefined;
const small = patternBytes(100 * KiB + 1, 1);
const big = patternBytes(3 * 1024 * KiB + 5, 2);
const same = (a: Uint8Array | undefined, b: Uint8Array) =>
  a !== undefined && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
const NO_CERT = 'skipped: openssl is not installed, no certificate for TLS';

beforeAll(async () => {
  cert = await makeCert();
  if (!cert) return;
  s3 = await startLocalS3({ buckets: ['tls'], tls: cert });
  const t = tier({ ca: cert.cert });
  await t.write('small', small);
  await t.write('big', big);
  await t.close();
});
afterAll(async () => {
  await s3?.close();
});

function tier(extra: Partial<S3TierOptions> = {}): S3Tier {
  return new S3Tier({
    bucket: 'tls',
    endpoint: s3!.endpoint,
    credentials: LOCAL_S3_CREDENTIALS,
    partSize: 256 * KiB,
    retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 2 },
    ...extra,
  });
}

describe.each([true, false])('s3rver over https (directGets: %s)', (directGets) => {
  it('reads byte-exact: whole, ranges, into a buffer, as a stream', async (ctx) => {
    if (!cert) return ctx.skip(NO_CERT);
    const t = tier({ ca: cert.cert, directGets });
    expect(t.directGets).toBe(directGets);
    expect(same(await t.read('small'), small)).toBe(true);
    expect(same(await t.read('big'), big)).toBe(true);
    expect(
      same(
        await t.read('big', { range: { offset: 12345, length: 1024 * KiB } }),
        big.subarray(12345, 12345 + 1024 * KiB),
      ),
    ).toBe(true);
    const target = new Uint8Array(big.byteLength);
    expect(await t.readInto('big', target)).toBe(big.byteLength);
    expect(same(target, big)).toBe(true);
    const parts: Buffer[] = [];
    for await (const c of (await t.readStream('big'))!) parts.push(Buffer.from(c as Uint8Array));
    expect(same(Buffer.concat(parts), big)).toBe(true);
    expect(await t.read('absent')).toBeUndefined();
    // Still direct: nothing in these answers sent it back to the SDK.
    expect(t.directGets).toBe(directGets);
    await t.close();
  });

  it('an untrusted certificate is a typed error that says what to do, and is not retried', async (ctx) => {
    if (!cert) return ctx.skip(NO_CERT);
    const t = tier({ directGets });
    for (const op of [() => t.read('small'), () => t.stat('small')]) {
      const err = await op().catch((e: unknown) => e);
      expect(isTierError(err), String(err)).toBe(true);
      const e = err as TierError;
      expect(e.code).toBe('UNAVAILABLE');
      expect(e.retryable).toBe(false);
      expect(e.message).toMatch(/certificate is not trusted.*ca/);
    }
    await t.close();
  });
});

describe('TLS trust and connections', () => {
  it('NODE_EXTRA_CA_CERTS is honoured on both paths, with or without `ca`', async (ctx) => {
    if (!cert) return ctx.skip(NO_CERT);
    const dir = await mkdtemp(join(tmpdir(), 'tierkit-ca-'));
    try {
      const caFile = join(dir, 'ca.pem');
      await writeFile(caFile, cert.cert);
      const other = (await makeCert())!.cert; // a `ca` that does not sign this server: the extra one still counts
      const run = (opts: string) =>
        new Promise<string>((resolve) =>
          execFile(
            process.execPath,
            [
              '--input-type=module',
              '-e',
              `import { S3Tier } from '@tierkit/tier-s3';
               for (const directGets of [true, false]) {
                 const t = new S3Tier({ bucket: 'tls', endpoint: ${JSON.stringify(s3!.endpoint)}, directGets,
                   credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, ${opts} });
                 const got = await t.read('small').catch((e) => e);
                 console.log(directGets, t.directGets, got?.byteLength ?? got?.message);
                 await t.close();
               }`,
            ],
            {
              encoding: 'utf8',
              cwd: import.meta.dirname,
              timeout: 20_000,
              env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile },
            },
            (_err, stdout, stderr) => resolve(stdout + stderr),
          ),
        );
      const plain = await run('');
      expect(plain).toContain(`true true ${small.byteLength}`);
      expect(plain).toContain(`false false ${small.byteLength}`);
      const withCa = await run(`ca: ${JSON.stringify(other)}`);
      expect(withCa).toContain(`true true ${small.byteLength}`);
      expect(withCa).toContain(`false false ${small.byteLength}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps TLS connections alive across reads', async (ctx) => {
    if (!cert) return ctx.skip(NO_CERT);
    const data = patternBytes(50_000, 3);
    const etag = `"${createHash('md5').update(data).digest('hex')}"`;
    const server = await rawServer((req, socket) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get('range') ?? '')!;
      const from = Number(m[1]);
      const to = Math.min(Number(m[2]), data.byteLength - 1);
      socket.write(
        `HTTP/1.1 206 Partial Content\r\nContent-Length: ${to - from + 1}\r\nContent-Range: bytes ${from}-${to}/${data.byteLength}\r\nETag: ${etag}\r\n\r\n`,
      );
      socket.write(data.subarray(from, to + 1));
    }, cert);
    const t = new S3Tier({
      bucket: 'bkt',
      endpoint: server.endpoint,
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
      ca: cert.cert,
    });
    for (let i = 0; i < 10; i++) {
      expect(
        same(
          await t.read('k', { range: { offset: i * 100, length: 1000 } }),
          data.subarray(i * 100, i * 100 + 1000),
        ),
      ).toBe(true);
    }
    expect(server.requests.length).toBe(10);
    expect(server.connections).toBe(1);
    await t.close();
    await server.close();
  });

  it('virtual-hosted addressing: bucket.host with SNI, the key as the path', async (ctx) => {
    if (!cert) return ctx.skip(NO_CERT);
    const data = patternBytes(20_000, 4);
    const snis: (string | false | null)[] = [];
    const server = await rawServer((req, socket) => {
      snis.push((socket as import('node:tls').TLSSocket).servername);
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get('range') ?? '')!;
      const from = Number(m[1]);
      const to = Math.min(Number(m[2]), data.byteLength - 1);
      socket.write(
        `HTTP/1.1 206 Partial Content\r\nContent-Length: ${to - from + 1}\r\nContent-Range: bytes ${from}-${to}/${data.byteLength}\r\nETag: "e"\r\n\r\n`,
      );
      socket.write(data.subarray(from, to + 1));
    }, cert);
    const port = new URL(server.endpoint).port;
    const t = new S3Tier({
      bucket: 'bkt',
      endpoint: `https://s3.localhost:${port}`,
      forcePathStyle: false,
      credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
      ca: cert.cert,
    });
    expect(t.directGets).toBe(true);
    expect(same(await t.read('dir/k 1'), data)).toBe(true);
    expect(server.requests[0]!.path).toBe('/dir/k%201');
    expect(server.requests[0]!.headers.get('host')).toBe(`bkt.s3.localhost:${port}`);
    expect(snis[0]).toBe('bkt.s3.localhost');
    await t.close();
    await server.close();
  });
});
