// A whole process that reads one cached object, timed from outside by the
// warm-read suite (start-up, allocation and the read all count):
//
//   node whole-process-read.mjs tierkit <root> <key> <size> [fsOptionsJson]   # allocate, fs tier readInto
//   node whole-process-read.mjs readFile <path>                # fs.promises.readFile
import { readFile } from 'node:fs/promises';

const [mode, a, b, c, d] = process.argv.slice(2);
if (mode === 'tierkit') {
  // Only tier-fs is loaded: what an application that reads its cache would load.
  const { createFsTier } = await import('@tierkit/tier-fs');
  const tier = createFsTier({ root: a, name: 'cache', ...JSON.parse(d ?? '{}') });
  const target = Buffer.allocUnsafe(Number(c));
  const n = await tier.readInto(b, target);
  await tier.close();
  if (n !== target.length) throw new Error(`read ${n} of ${target.length} bytes`);
} else if (mode === 'readFile') {
  await readFile(a);
} else {
  throw new Error(`unknown mode ${mode}`);
}
