// A process range-reading objects through [fs cache under a small maxBytes, fs
// origin]; checks every byte against the origin's file and prints a report.
//   node pressure-reader.mjs <cacheRoot> <originRoot> <maxBytes> <blockSize> <reads> <seed> <keys...>
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createStack } from '@tierkit/tier-core';
import { FsTier } from '../dist/index.js';

const [cacheRoot, originRoot, maxBytes, blockSize, reads, seed, ...keys] = process.argv.slice(2);
const origin = new FsTier({ root: originRoot, name: 'origin', readOnly: true });
const cache = new FsTier({ root: cacheRoot, name: 'cache', maxBytes: Number(maxBytes), fsync: false });
const warnings = new Map();
const stack = createStack([cache, origin], {
  blockSize: Number(blockSize),
  fillPollMs: 5,
  onWarning: (w) => warnings.set(w.op, (warnings.get(w.op) ?? 0) + 1),
});
const truth = new Map();
for (const k of keys) truth.set(k, new Uint8Array(await readFile(join(originRoot, k))));
let x = Number(seed) || 1;
const rand = (n) => {
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  return x % n;
};
const bad = [];
const errors = [];
for (let i = 0; i < Number(reads); i++) {
  const key = keys[rand(keys.length)];
  const want = truth.get(key);
  const offset = rand(want.byteLength);
  const length = Math.min(want.byteLength - offset, 1 + rand(Number(blockSize) * 3));
  try {
    const got = await stack.read(key, { range: { offset, length } });
    if (!got || Buffer.compare(Buffer.from(got), Buffer.from(want.subarray(offset, offset + length))) !== 0)
      bad.push({ key, offset, length });
  } catch (err) {
    errors.push(`${err.code ?? ''} ${err.message}`);
  }
}
console.log(
  JSON.stringify({
    bad,
    errors,
    bypassed: stack.stats().bypassed,
    evictions: cache.evictions,
    warnings: Object.fromEntries(warnings),
  }),
);
await stack.close();
