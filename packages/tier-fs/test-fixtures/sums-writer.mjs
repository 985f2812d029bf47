// Writes some blocks of a partial copy (through the worker pool, with the memory the
// partial hands out) and exits without publishing: another process finishes it.
//   node sums-writer.mjs <root> <key> <size> <blockSize> <seed> <block>...
import { patternBytes } from '@tierkit/tier-core/testing';
import { FsTier } from '../dist/index.js';

const [root, key, size, blockSize, seed, ...blocks] = process.argv.slice(2);
const bytes = patternBytes(Number(size), Number(seed));
const tier = new FsTier({ root, name: 'sums-writer', fsync: false });
const bs = Number(blockSize);
const entry = await tier.openPartial(key, { size: Number(size), etag: '"v1"' }, { blockSize: bs });
for (const b of blocks.map(Number)) {
  const view = bytes.subarray(b * bs, Math.min(bytes.byteLength, (b + 1) * bs));
  const buf = entry.blockBuffer(view.byteLength);
  buf.set(view);
  if (!(await entry.claim(b))) throw new Error(`block ${b} is claimed`);
  await entry.writeBlock(b, buf);
  await entry.release(b);
}
await entry.close();
await tier.close();
console.log(`wrote ${blocks.length}`);
