// One of several processes sharing a cache directory with a small maxBytes.
// argv: root id ops maxBytes
// Prints one JSON line of counts; exits 1 if it ever read bytes that are not a
// complete, correct object.
import { FsTier } from '../dist/index.js';
import { makeObject, verifyHead, verifyObject } from './content.mjs';

const [root, id, opsArg, maxArg] = process.argv.slice(2);
const ops = Number(opsArg);
const tier = new FsTier({ root, maxBytes: Number(maxArg), flushIntervalMs: 100, lockPollMs: 2 });
await tier.ready;

let x = (Number(id) + 1) * 2654435761;
const rand = (n) => {
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  return x % n;
};
const counts = { writes: 0, reads: 0, hits: 0, misses: 0, rangeChecks: 0, capacityErrors: 0, bad: [] };

async function readAll(stream) {
  const parts = [];
  for await (const c of stream) parts.push(c);
  return new Uint8Array(Buffer.concat(parts));
}

for (let i = 0; i < ops; i++) {
  const key = `mp/k${rand(12)}`;
  const op = rand(10);
  try {
    if (op < 5) {
      const size = 20_000 + rand(100_000);
      await tier.write(key, makeObject(key, `${id}.${i}`, size));
      counts.writes++;
    } else {
      counts.reads++;
      let bytes;
      if (op < 8) bytes = await tier.read(key);
      else {
        const stream = await tier.readStream(key);
        bytes = stream && (await readAll(stream));
      }
      if (bytes === undefined) {
        counts.misses++;
        continue;
      }
      counts.hits++;
      const v = verifyObject(bytes, key);
      if (!v.ok) counts.bad.push(`${key}: ${v.reason}`);
      // A range of the same object through readInto: must match the pattern too.
      const target = new Uint8Array(1000);
      const n = await tier.readInto(key, target, { offset: 0 });
      if (n !== undefined) {
        const head = verifyHead(target.subarray(0, n), key);
        if (!head.ok) counts.bad.push(`${key} (readInto): ${head.reason}`);
        counts.rangeChecks++;
      }
    }
  } catch (err) {
    if (err?.code === 'CAPACITY') counts.capacityErrors++;
    else {
      counts.bad.push(`${key}: ${err?.code ?? ''} ${err?.message ?? err}`);
    }
  }
}
await tier.close();
process.stdout.write(`${JSON.stringify({ id, ...counts, evictions: tier.evictions })}\n`);
process.exit(counts.bad.length === 0 ? 0 : 1);
