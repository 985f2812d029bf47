// Opens the partial copy of `key` and claims blocks 0..n-1, then waits to be killed.
//   node claim-holder.mjs <root> <key> <size> <blockSize> <n>
import { FsTier } from '../dist/index.js';

const [root, key, size, blockSize, n] = process.argv.slice(2);
const tier = new FsTier({ root, name: 'holder', fsync: false });
const entry = await tier.openPartial(
  key,
  { size: Number(size), etag: '"v1"' },
  { blockSize: Number(blockSize) },
);
for (let b = 0; b < Number(n); b++) {
  if (!(await entry.claim(b))) throw new Error(`block ${b} not claimed`);
}
console.log('claimed');
setInterval(() => {}, 60_000);
