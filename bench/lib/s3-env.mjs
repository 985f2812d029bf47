// A local S3 server (s3rver in a child process, 127.0.0.1) holding the test
// object, and optionally a shaping proxy in front of it.
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { LOCAL_S3_CREDENTIALS, localS3ClientConfig } from '@tierkit/tier-s3/testing';
import { objectChunks } from './data.mjs';

const child = join(dirname(fileURLToPath(import.meta.url)), 's3-child.mjs');

export const CREDENTIALS = LOCAL_S3_CREDENTIALS;
export const REGION = 'us-east-1';

function startChild(args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [child, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    const onData = (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      proc.stdout.off('data', onData);
      const { endpoint } = JSON.parse(out.slice(0, nl));
      resolve({
        endpoint,
        pid: proc.pid,
        close: () =>
          new Promise((done) => {
            if (proc.exitCode !== null) return done();
            proc.once('exit', done);
            proc.stdin.end();
            // A server stuck in a transfer still goes.
            setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
          }),
      });
    };
    proc.stdout.on('data', onData);
    proc.once('error', reject);
    proc.once('exit', (code) =>
      reject(new Error(`s3-child ${args[0]} exited with ${code} before it was ready`)),
    );
  });
}

/** The bench's own SDK client, without the SDK's notice about future Node versions (as tier-s3 builds its own). */
export function s3Client(endpoint) {
  const name = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';
  const before = process.env[name];
  process.env[name] = 'true';
  try {
    return new S3Client({ ...localS3ClientConfig(endpoint), maxAttempts: 3 });
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

/**
 * Starts s3rver on `directory` with one bucket and uploads the test object
 * (`size` bytes) as `key`, then reads the stored copy once so every contestant
 * meets a server whose disk is warm (the bench measures the transfer path, not
 * this VM's disk).
 */
export function startS3WithObject({ directory, bucket, key, size }) {
  return startS3WithObjects({ directory, bucket, objects: [{ key, size }] });
}

/** The same with several objects (`{ key, size }[]`), each the test bytes from offset 0. */
export async function startS3WithObjects({ directory, bucket, objects }) {
  const server = await startChild(['server', directory, bucket]);
  const client = s3Client(server.endpoint);
  try {
    for (const { key, size } of objects) {
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: Readable.from(objectChunks(size)),
          ContentLength: size,
        }),
      );
    }
  } finally {
    client.destroy();
  }
  warmServerFiles(directory);
  return server;
}

/** Reads the server's stored files once, so they sit in the page cache (after a drop of the caches, say). */
export function warmServerFiles(directory) {
  spawnSync('sh', ['-c', 'find "$1" -type f -exec cat {} + > /dev/null', 'sh', directory], {
    stdio: 'ignore',
  });
}

/** A shaping proxy (per-connection rate, added latency per request) in front of `target`. */
export function startShapingProxy(target, { bytesPerSecond, latencyMs }) {
  return startChild(['proxy', target, String(bytesPerSecond), String(latencyMs)]);
}
