/**
 * The direct GET path gives itself up for the SDK at the first answer it cannot
 * take (a 2xx body without Content-Length). Requests already waiting for one of
 * its sockets must follow to the SDK — not fail as if the tier were closed.
 */
import { expect, it } from 'vitest';
import { S3Tier } from './index.js';
import { rawServer } from './test-servers.js';

const SIZE = 1000;

it('one chunked answer sends the reads waiting behind it to the SDK, never CLOSED', async () => {
  let answered = 0;
  const server = await rawServer((req, socket) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get('range') ?? '');
    const from = m ? Number(m[1]) : 0;
    const to = m ? Math.min(Number(m[2]), SIZE - 1) : SIZE - 1;
    const body = Buffer.alloc(to - from + 1, 5);
    const head = `HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${from}-${to}/${SIZE}\r\nETag: "v-2"\r\n`;
    if (answered++ === 0) {
      // Late and chunked, while the other reads wait for the one socket.
      setTimeout(() => {
        socket.write(`${head}Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n`);
        socket.write(body);
        socket.write('\r\n0\r\n\r\n');
      }, 100);
      return;
    }
    socket.write(`${head}Content-Length: ${body.length}\r\n\r\n`);
    socket.write(body);
  });
  const tier = new S3Tier({
    bucket: 'models',
    endpoint: server.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'A', secretAccessKey: 'S' },
    maxSockets: 1,
    retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 1 },
  });
  try {
    expect(tier.directGets).toBe(true);
    const outcomes = await Promise.all(
      ['a', 'b', 'c'].map((k) =>
        tier.read(k).then(
          (v) => `ok ${v?.byteLength}`,
          (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
        ),
      ),
    );
    expect(outcomes).toEqual(['ok 1000', 'ok 1000', 'ok 1000']);
    expect(tier.directGets).toBe(false);
  } finally {
    await tier.close();
    await server.close();
  }
}, 30_000);
