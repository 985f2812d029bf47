// A process reading one object cold through [fs cache, fs origin]; prints the
// bytes it fetched from the origin and a hash of what it read.
//   node fill-reader.mjs <cacheRoot> <originRoot> <key> <blockSize>
import { createHash } from 'node:crypto';
import { createStack, withMetrics } from '@tierkit/tier-core';
import { FsTier } from '../dist/index.js';

const [cacheRoot, originRoot, key, blockSize] = process.argv.slice(2);
const origin = withMetrics()(new FsTier({ root: originRoot, name: 'origin' }));
const stack = createStack([new FsTier({ root: cacheRoot, name: 'cache' }), origin], {
  blockSize: Number(blockSize),
  fillConcurrency: 4,
  fillPollMs: 5,
});
const bytes = await stack.read(key);
console.log(
  JSON.stringify({
    fetched: origin.metrics.bytesRead,
    sha: createHash('sha256').update(bytes).digest('hex'),
    size: bytes.byteLength,
  }),
);
await stack.close();
