// Contends for one key's fill lock. Inside the lock it creates a marker file
// with O_EXCL: if two holders ever overlap, the second create fails.
// argv: root markerDir rounds holdMs [mode]
//   mode 'hold': take the lock, print 'held', and wait to be killed.
import { appendFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FsTier } from '../dist/index.js';
import { sleep } from './content.mjs';

const [root, markerDir, roundsArg, holdArg, mode] = process.argv.slice(2);
const tier = new FsTier({ root, lockPollMs: 2, lockLeaseMs: 60_000 });
await tier.ready;
const key = 'fills/model.safetensors';

if (mode === 'hold') {
  await tier.acquireLock(key);
  process.stdout.write('held\n');
  await sleep(120_000);
  process.exit(0);
}

let overlaps = 0;
let fills = 0;
for (let i = 0; i < Number(roundsArg); i++) {
  await tier.withFillLock(key, async (lock) => {
    const marker = join(markerDir, 'inside');
    try {
      writeFileSync(marker, String(process.pid), { flag: 'wx' });
    } catch {
      overlaps++;
      return;
    }
    appendFileSync(join(markerDir, 'log'), `${process.pid} ${lock.tookOver ? 'took-over' : 'fill'}\n`);
    await sleep(Number(holdArg));
    fills++;
    unlinkSync(marker);
  });
}
await tier.close();
process.stdout.write(`${JSON.stringify({ pid: process.pid, fills, overlaps })}\n`);
process.exit(overlaps === 0 ? 0 : 1);
