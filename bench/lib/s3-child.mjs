// Runs the local S3 server or the shaping proxy in its own process, so neither
// shares an event loop (or a core's time slice) with the contestant under test.
//
//   node s3-child.mjs server <directory> <bucket>
//   node s3-child.mjs proxy <target> <bytesPerSecond> <latencyMs>
//
// Prints one JSON line {"endpoint": ...} when ready; exits when stdin closes.
import { startLocalS3, startShapingProxy } from '@tierkit/tier-s3/testing';

const [mode, a, b, c] = process.argv.slice(2);
let handle;
if (mode === 'server') {
  handle = await startLocalS3({ directory: a, buckets: [b] });
} else if (mode === 'proxy') {
  handle = await startShapingProxy({ target: a, bytesPerSecond: Number(b), latencyMs: Number(c) });
} else {
  throw new Error(`unknown mode ${mode}`);
}
process.stdout.write(`${JSON.stringify({ endpoint: handle.endpoint })}\n`);

// The parent holds our stdin open; when it closes (parent done or dead) we stop.
process.stdin.resume();
process.stdin.on('end', async () => {
  await handle.close().catch(() => undefined);
  process.exit(0);
});
