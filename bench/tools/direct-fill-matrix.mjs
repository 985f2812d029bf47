#!/usr/bin/env node
// directFill on and off, each fill in a FRESH node process (the way `tierkit warm`
// runs in a pod), on several filesystems: the figures `directFill`'s default is
// decided by. One s3rver (its own process) holds one object; per round, for each
// folder and each mode (the order rotating), the page cache is dropped (as root),
// the server's file read back in, and a new process fills the object into a new
// cache folder there (bench/lib/whole-process-s3.mjs fill-loop, 1 fill).
//
//   MATRIX_DIRS=/mnt/ext4,/mnt/xfs,/mnt/tmpfs MATRIX_MIB=512 MATRIX_RUNS=3 node bench/tools/direct-fill-matrix.mjs
//
// Mount the filesystems first (as root), e.g. an ext4 and an xfs image on loop devices:
//   truncate -s 3G /var/tmp/ext4.img && mkfs.ext4 -q -F /var/tmp/ext4.img && mount -o loop /var/tmp/ext4.img /mnt/ext4
//   truncate -s 3G /var/tmp/xfs.img && mkfs.xfs -q -f /var/tmp/xfs.img && mount -o loop /var/tmp/xfs.img /mnt/xfs
//   mount -t tmpfs -o size=2G tmpfs /mnt/tmpfs
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dropCaches } from '../lib/data.mjs';
import { runCollect } from '../lib/process.mjs';
import { startS3WithObject, warmServerFiles } from '../lib/s3-env.mjs';
import { fmt, MiB, summarize } from '../stats.mjs';

const CHILD = join(dirname(fileURLToPath(import.meta.url)), '..', 'lib', 'whole-process-s3.mjs');
const dirs = (process.env.MATRIX_DIRS || tmpdir()).split(',').filter(Boolean);
const size = Number(process.env.MATRIX_MIB || 512) * MiB;
const runs = Number(process.env.MATRIX_RUNS || 3);
const fills = Number(process.env.MATRIX_FILLS || 1);

const fsType = (d) =>
  spawnSync('findmnt', ['-no', 'FSTYPE', '-T', d], { encoding: 'utf8' }).stdout.trim() || '?';
const serverDir = await mkdtemp(join(tmpdir(), 'tierkit-matrix-s3-'));
const server = await startS3WithObject({ directory: serverDir, bucket: 'matrix', key: 'model.bin', size });
const cells = [];
for (const d of dirs)
  for (const direct of [true, false]) cells.push({ dir: d, direct, seconds: [], cpu: [] });
let dropped = true;
try {
  for (let r = 0; r < runs; r++) {
    const shift = r % cells.length;
    for (const c of [...cells.slice(shift), ...cells.slice(0, shift)]) {
      dropped = dropCaches() && dropped;
      warmServerFiles(serverDir);
      const base = await mkdtemp(join(c.dir, 'tierkit-matrix-'));
      try {
        const out = await runCollect(
          process.execPath,
          [
            CHILD,
            'fill-loop',
            server.endpoint,
            'matrix',
            'model.bin',
            base,
            String(fills),
            JSON.stringify({ directFill: c.direct }),
          ],
          { label: 'fill-loop' },
        );
        const res = JSON.parse(out.trim().split('\n').pop());
        c.seconds.push(res.seconds[0]);
        c.cpu.push((res.cpuUserMs + res.cpuSystemMs) / fills);
        console.error(
          `${c.dir} (${fsType(c.dir)}) directFill ${c.direct}: ${res.seconds.map((s) => fmt(size / MiB / s, 0)).join(' → ')} MiB/s`,
        );
      } finally {
        await rm(base, { recursive: true, force: true });
      }
    }
  }
} finally {
  await server.close();
  await rm(serverDir, { recursive: true, force: true });
}
console.log(
  `${size / MiB} MiB, one fill per fresh process, ${runs} runs${dropped ? ', page cache dropped before each' : ' (page cache NOT dropped: not root)'}\n`,
);
console.log('| folder | filesystem | directFill | median MiB/s | min | max | CPU s per fill (median) |');
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: |');
for (const c of cells) {
  const s = summarize(c.seconds);
  console.log(
    `| ${c.dir} | ${fsType(c.dir)} | ${c.direct ? 'on' : 'off'} | ${fmt(size / MiB / s.median, 0)} | ${fmt(size / MiB / s.max, 0)} | ${fmt(size / MiB / s.min, 0)} | ${fmt(summarize(c.cpu).median / 1000, 2)} |`,
  );
}
