/**
 * A stream's parts hold bytes of the tier's in-flight budget (maxBytesInFlight).
 * A stream whose first part fails must give its share back, or with the budget
 * used up every later read of the tier waits forever.
 */
import { expect, it } from 'vitest';
import { S3Tier } from './index.js';
import { rawServer } from './test-servers.js';

const SIZE = 200_000;

it('a stream whose first part fails gives its budget back: the next read goes through', async () => {
  let answered = 0;
  const server = await rawServer((req, socket) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get('range') ?? '');
    const from = Number(m?.[1] ?? 0);
    const to = Math.min(Number(m?.[2] ?? SIZE - 1), SIZE - 1);
    const length = to - from + 1;
    socket.write(
      `HTTP/1.1 206 Partial Content\r\nContent-Length: ${length}\r\n` +
        `Content-Range: bytes ${from}-${to}/${SIZE}\r\nETag: "v-2"\r\n\r\n`,
    );
    // The first answer is cut halfway: the stream's first part fails (one attempt only).
    if (answered++ === 0) {
      socket.write(Buffer.alloc(length >> 1, 7));
      socket.destroy();
      return;
    }
    socket.write(Buffer.alloc(length, 7));
  });
  const tier = new S3Tier({
    bucket: 'models',
    endpoint: server.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'A', secretAccessKey: 'S' },
    partSize: 64 * 1024,
    // One part's worth: a part that never gives its budget back blocks everything after it.
    maxBytesInFlight: 64 * 1024,
    retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
  });
  try {
    const stream = await tier.readStream('k');
    const failed = await (async () => {
      try {
        for await (const _ of stream!) {
          // drain
        }
        return undefined;
      } catch (err) {
        return err;
      }
    })();
    expect(failed).toMatchObject({ name: 'TierError' });
    const next = tier.read('k', { range: { offset: 0, length: 10 } });
    const hung = new Promise<string>((resolve) =>
      setTimeout(() => resolve('waited 10 s for the budget'), 10_000),
    );
    const got = await Promise.race([next.then((b) => b?.byteLength), hung]);
    expect(got).toBe(10);
  } finally {
    await tier.close();
    await server.close();
  }
}, 30_000);
