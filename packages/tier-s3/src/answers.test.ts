/**
 * Odd answers, on both GET paths: a body cut with no attempts left, a range
 * the server did not ask for, an error page that is not S3 XML.
 */
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { isTierError, type TierError } from '@tierkit/tier-core';
import { patternBytes } from '@tierkit/tier-core/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { S3Tier, type S3TierOptions } from './index.js';
import { type RawRequest, type RawServer, rawServer } from './test-servers.js';

const data = patternBytes(300_000, 5);
const etag = `"${createHash('md5').update(data).digest('hex')}"`;
const servers: RawServer[] = [];
const tiers: S3Tier[] = [];
afterEach(async () => {
  for (const t of tiers.splice(0)) await t.close();
  for (const s of servers.splice(0)) await s.close();
});

function rangeOf(req: RawRequest): [number, number] {
  const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get('range') ?? '')!;
  return [Number(m[1]), Math.min(Number(m[2]), data.byteLength - 1)];
}

function answer(socket: Socket, from: number, to: number, cut?: number): void {
  const body = data.subarray(from, to + 1);
  socket.write(
    `HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.byteLength}\r\n` +
      `Content-Range: bytes ${from}-${to}/${data.byteLength}\r\nETag: ${etag}\r\n\r\n`,
  );
  if (cut === undefined) socket.write(body);
  else socket.end(body.subarray(0, cut));
}

async function setup(
  directGets: boolean,
  handler: (req: RawRequest, socket: Socket, n: number) => void,
  extra: Partial<S3TierOptions> = {},
) {
  let n = 0;
  const server = await rawServer((req, socket) => handler(req, socket, n++));
  servers.push(server);
  const tier = new S3Tier({
    bucket: 'bkt',
    endpoint: server.endpoint,
    credentials: { accessKeyId: 'AK', secretAccessKey: 'SK' },
    directGets,
    partSize: 64 * 1024,
    adaptive: false,
    retry: { attempts: 4, baseDelayMs: 1, maxDelayMs: 2 },
    ...extra,
  });
  tiers.push(tier);
  return { server, tier };
}

describe.each([true, false])('odd answers (directGets: %s)', (directGets) => {
  it('retry.attempts: 1 means one GET, even when the first body is cut', async () => {
    const { server, tier } = await setup(
      directGets,
      (req, socket) => {
        const [from, to] = rangeOf(req);
        answer(socket, from, to, 1000);
      },
      { retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } },
    );
    const err = await tier.read('k', { range: { offset: 0, length: 10_000 } }).catch((e: unknown) => e);
    expect(isTierError(err), String(err)).toBe(true);
    expect((err as TierError).retryable).toBe(true);
    expect(server.requests.filter((r) => r.method === 'GET').length).toBe(1);
  });

  it('a range other than the one asked for is asked again, not a failure of the whole read', async () => {
    const { server, tier } = await setup(directGets, (req, socket, n) => {
      const [from, to] = rangeOf(req);
      // The second request (a later part) is answered from a later offset than asked, once.
      if (n === 1) answer(socket, from + 10, to);
      else answer(socket, from, to);
    });
    const got = await tier.read('k');
    expect(Buffer.compare(Buffer.from(got!), Buffer.from(data))).toBe(0);
    expect(server.requests.length).toBeGreaterThan(Math.ceil(data.byteLength / (64 * 1024)));
  });

  it('an HTTP error page that is not S3 XML says its status', async () => {
    const { tier } = await setup(directGets, (_req, socket) => {
      const html = '<html><body><h1>413 Request Entity Too Large</h1></body></html>';
      socket.write(
        `HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: text/html\r\nContent-Length: ${html.length}\r\n\r\n${html}`,
      );
    });
    for (const op of [
      () => tier.read('k'),
      () => tier.stat('k'),
      () => tier.write('k', new Uint8Array(10)),
    ]) {
      const err = await op().catch((e: unknown) => e);
      expect(isTierError(err), String(err)).toBe(true);
      expect((err as TierError).message).toMatch(/413/);
      expect((err as TierError).details?.status).toBe(413);
    }
  });
});
