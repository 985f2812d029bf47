/**
 * Misbehaving servers for the timeout and TLS tests, over plain TCP or TLS on
 * 127.0.0.1 (a throwaway certificate comes from testing/cert.ts).
 */
import { spawn } from 'node:child_process';
import { createServer as createNetServer, type Server, Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { TestCert } from './testing/cert.js';

// The certificate helper is public (`@tierkit/tier-s3/testing`), shared with the bench.
export { makeTestCert as makeCert, type TestCert } from './testing/cert.js';

export interface RawRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Map<string, string>;
}

export interface RawServer {
  readonly endpoint: string;
  readonly requests: RawRequest[];
  /** TCP connections accepted so far (with TLS, whether or not the handshake completed). */
  readonly connections: number;
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 server at the socket level: `answer` writes what it likes for
 * each request head (request bodies are read and ignored). With `tls`, the same
 * behind a TLS handshake.
 */
export async function rawServer(
  answer: (req: RawRequest, socket: Socket) => void,
  tls?: TestCert,
): Promise<RawServer> {
  const requests: RawRequest[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const onSocket = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = '';
    let bodyLeft = 0;
    socket.on('data', (chunk: Buffer) => {
      let text = chunk.toString('latin1');
      if (bodyLeft > 0) {
        const n = Math.min(bodyLeft, text.length);
        bodyLeft -= n;
        text = text.slice(n);
      }
      buf += text;
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0 && bodyLeft === 0; end = buf.indexOf('\r\n\r\n')) {
        const [line, ...rest] = buf.slice(0, end).split('\r\n');
        buf = buf.slice(end + 4);
        const headers = new Map(
          rest.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
        );
        const [method, path] = line!.split(' ');
        const req = { method: method!, path: path!, headers };
        requests.push(req);
        bodyLeft = Number(headers.get('content-length') ?? 0);
        const n = Math.min(bodyLeft, buf.length);
        bodyLeft -= n;
        buf = buf.slice(n);
        answer(req, socket);
      }
    });
  };
  const server: Server = tls
    ? createTlsServer({ key: tls.key, cert: tls.cert }, onSocket)
    : createNetServer(onSocket);
  // Counted at the TCP accept: with TLS a client that gives up during the handshake
  // (its timeout, under load) still made the connection.
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    requests,
    get connections() {
      return connections;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A server whose handshakes never complete: a process that listens and never accepts. */
export interface BlackHole {
  readonly endpoint: string;
  /** Whether a connect to it really hangs here (the kernel drops SYNs once the queue is full). */
  readonly hangs: boolean;
  close(): Promise<void>;
}

export async function blackHole(): Promise<BlackHole> {
  // The child blocks its event loop right after listening: the kernel queues `backlog`
  // handshakes, and drops the SYNs of every connect after that.
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').createServer();
       s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
         process.send(s.address().port, () => {
           process.disconnect();
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 120000);
         });
       });`,
    ],
    { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve(m as number));
    child.once('exit', () => reject(new Error('the listener exited')));
  });
  const fillers: Socket[] = [];
  const probe = (ms: number) =>
    new Promise<boolean>((resolve) => {
      const s = new Socket();
      fillers.push(s);
      s.on('error', () => resolve(false));
      const t = setTimeout(() => resolve(true), ms);
      s.connect(port, '127.0.0.1', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
  // Fill the accept queue, then see whether one more connect hangs.
  let hangs = false;
  for (let i = 0; i < 8 && !hangs; i++) hangs = await probe(150);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    hangs,
    async close() {
      for (const s of fillers) s.destroy();
      child.kill('SIGKILL');
    },
  };
}
