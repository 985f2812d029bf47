/**
 * A ranged read in parts fails fast: when one part fails for good, the others
 * stop — the first part's body included, which used to run on until it ended
 * or its idle timeout (30 s by default) fired.
 */
import { expect, it } from 'vitest';
import { S3Tier } from './index.js';
import { rawServer } from './test-servers.js';

// Parts past the probe size (1 MiB): the other parts start once the first has sent that much.
const PART = 2 * 1024 * 1024;
const SIZE = 3 * PART;

it("a part that fails for good stops the first part's stalled body at once", async () => {
  const server = await rawServer((req, socket) => {
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.get('range') ?? '');
    const from = Number(m?.[1] ?? 0);
    const to = Math.min(Number(m?.[2] ?? SIZE - 1), SIZE - 1);
    if (from === 0) {
      // The first part: headers and 1.5 MiB of its body, then silence (the socket stays open).
      socket.write(
        `HTTP/1.1 206 Partial Content\r\nContent-Length: ${to + 1}\r\n` +
          `Content-Range: bytes 0-${to}/${SIZE}\r\nETag: "v-2"\r\n\r\n`,
      );
      socket.write(Buffer.alloc(1.5 * 1024 * 1024, 1));
      return;
    }
    const xml = '<?xml version="1.0"?><Error><Code>AccessDenied</Code><Message>no</Message></Error>';
    socket.write(
      `HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: ${xml.length}\r\n\r\n${xml}`,
    );
  });
  const tier = new S3Tier({
    bucket: 'models',
    endpoint: server.endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'A', secretAccessKey: 'S' },
    partSize: PART,
    idleTimeoutMs: 60_000,
    retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
  });
  try {
    const read = tier.read('k').then(
      () => 'read succeeded',
      (e: { code?: string }) => `failed ${e.code}`,
    );
    // Far below the idle timeout: only stopping the first body ends the read this soon.
    const guard = new Promise<string>((r) => setTimeout(() => r('still waiting on the first body'), 15_000));
    const outcome = await Promise.race([read, guard]);
    expect(outcome).toMatch(/^failed /);
    expect(outcome).not.toBe('failed ABORTED');
  } finally {
    await tier.close();
    await server.close();
  }
}, 40_000);
