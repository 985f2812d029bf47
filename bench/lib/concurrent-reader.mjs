// One cold reader in its own process, for the concurrency suite:
//   node concurrent-reader.mjs <endpoint> <bucket> <key> <cacheDir> <readers>
// Builds a stack [fs cache at cacheDir, S3 origin], drains `readers` whole-object
// streams at once, and prints {seconds, bytes, originBytes} as one JSON line.
import { createStack } from '@tierkit/tier-core';
import { createFsTier } from '@tierkit/tier-fs';
import { countingTier, s3OriginTier } from './tierkit-concurrency.mjs';

const [endpoint, bucket, key, cacheDir, readers = '1'] = process.argv.slice(2);
const counter = { bytes: 0 };
const cache = createFsTier({ root: cacheDir, name: 'cache' });
const origin = countingTier(s3OriginTier(endpoint, bucket), counter);
const stack = createStack([cache, origin], { name: 'bench' });
const t0 = process.hrtime.bigint();
let bytes = 0;
await Promise.all(
  Array.from({ length: Number(readers) }, async () => {
    const s = await stack.readStream(key);
    if (!s) throw new Error(`${key} not found`);
    for await (const c of s) bytes += c.byteLength;
  }),
);
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
await stack.close?.();
console.log(JSON.stringify({ seconds, bytes, originBytes: counter.bytes }));
