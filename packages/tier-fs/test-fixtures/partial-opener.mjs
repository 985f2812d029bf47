// Opens the partial copies of keys k0..k<n-1> one after another and writes
// block <index> of each, racing other processes doing the same.
//   node partial-opener.mjs <root> <index> <n>
import { patternBytes } from '@tierkit/tier-core/testing';
import { FsTier } from '../dist/index.js';

const [root, index, n] = process.argv.slice(2);
const tier = new FsTier({ root, name: `opener-${index}` });
for (let k = 0; k < Number(n); k++) {
  const entry = await tier.openPartial(`k${k}`, { size: 400, etag: '"new"' }, { blockSize: 100 });
  await entry.writeBlock(Number(index), patternBytes(100, Number(index)));
  await entry.close();
}
await tier.close();
console.log('done');
