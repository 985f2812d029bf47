// One KV-latency contestant in a process of its own, so no contestant inherits
// another's CPU-cache, JIT or thread-pool state:
//   node kv-reader.mjs <root> <contestant> <chunkBytes> <samples> <key>...
// contestant: raw | raw-sync | tier | kv | kv-none | kv-pool. Prints the sample latencies (seconds) as JSON.
import { readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { KvStore } from '@tierkit/kv';
import { FsTier } from '@tierkit/tier-fs';

const [root, contestant, chunkArg, samplesArg, ...keys] = process.argv.slice(2);
const chunkBytes = Number(chunkArg);
const samples = Number(samplesArg);
const buf = new Uint8Array(chunkBytes);
const chunks = keys.map((key) => ({ key }));

let read;
let done = async () => {};
if (contestant === 'raw') {
  // A descriptor per file, opened once: the floor any cache must approach.
  const handles = await Promise.all(keys.map((k) => open(join(root, k), 'r')));
  read = async (i) => (await handles[i].read(buf, 0, chunkBytes, 0)).bytesRead;
  done = () => Promise.all(handles.map((h) => h.close()));
} else if (contestant === 'raw-sync') {
  // The same, on the calling thread: no thread-pool round trip (the floor for a page-cache hit).
  const handles = await Promise.all(keys.map((k) => open(join(root, k), 'r')));
  read = async (i) => readSync(handles[i].fd, buf, 0, chunkBytes, 0);
  done = () => Promise.all(handles.map((h) => h.close()));
} else {
  const fs = await new FsTier({
    root,
    fsync: false,
    ...(contestant === 'kv-none' || contestant === 'kv-pool' ? { descriptorCheck: 'none' } : {}),
    ...(contestant === 'kv-pool' ? { inlineReadMax: 0 } : {}),
  }).open();
  done = () => fs.close();
  if (contestant === 'tier') read = (i) => fs.readInto(keys[i], buf);
  else {
    const kv = new KvStore({ tier: fs, model: 'bench', chunkSize: 256 });
    read = async (i) => ((await kv.get([chunks[i]], { into: [buf] })).hits === 1 ? chunkBytes : 0);
  }
}

const warm = Math.min(20, samples);
const out = [];
for (let s = -warm; s < samples; s++) {
  // Each read is of another chunk than the one before: page cache warm, CPU caches not.
  const i = ((s % keys.length) + keys.length) % keys.length;
  const t0 = process.hrtime.bigint();
  const n = await read(i);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  if (n !== chunkBytes) throw new Error(`${contestant}: short read of ${keys[i]} (${n})`);
  if (s >= 0) out.push(dt);
}
await done();
console.log(JSON.stringify(out));
