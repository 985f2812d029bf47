// Writes large objects over and over until the parent kills it with SIGKILL.
// argv: root round
import { FsTier } from '../dist/index.js';
import { makeObject } from './content.mjs';

const [root, round] = process.argv.slice(2);
const tier = new FsTier({ root, flushIntervalMs: 20 });
await tier.ready;
const MiB = 1024 * 1024;

async function* chunks(bytes, size, label) {
  for (let i = 0; i < bytes.byteLength; i += size) {
    yield bytes.subarray(i, Math.min(i + size, bytes.byteLength));
    if (i === 0) {
      // The first chunk is in the temp file: a parent that wants a kill mid-write waits for this.
      process.stdout.write(`mid ${label}\n`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

for (let i = 0; i < 64; i++) {
  const key = `obj/k${i % 12}`;
  const version = `${round}.${i}`;
  const size = 4 * MiB + ((i * 7919 + Number(round) * 104729) % (4 * MiB));
  const bytes = makeObject(key, version, size);
  process.stdout.write(`writing ${key} ${version}\n`);
  if (i % 2 === 0) {
    await tier.write(key, bytes, { source: { size, etag: `"v${version}"` } });
  } else {
    await tier.write(key, chunks(bytes, MiB, `${key} ${version}`), { size });
  }
  // Reads touch last-use times, which the journal flushes every 20 ms.
  await tier.read(key, { range: { offset: 0, length: 16 } });
  process.stdout.write(`done ${key} ${version}\n`);
}
await tier.close();
process.stdout.write('finished\n');
