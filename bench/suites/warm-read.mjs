// Warm read: one cached object (in tierkit's fs cache, in the page cache) read
// into memory by tierkit and by the tools a user would reach for instead.
import { open, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  collect,
  objectChunks,
  scratchDir,
  verifyFile,
  warmPageCache,
  writeObjectFile,
} from '../lib/data.mjs';
import { recordsJson, resultsTable, rounds, targetsTable, throughput } from '../lib/measure.mjs';
import { findPeers, peersMarkdown } from '../lib/peers.mjs';
import { fioSeconds, timeProcess } from '../lib/process.mjs';
import { fmt, GiB, MiB } from '../stats.mjs';

export const name = 'warm-read';
export const title = 'Warm read of a cached object: tierkit readInto vs cat, fio, readFile';

const KEY = 'models/warm.bin';
const BLOCK = 4 * MiB;
const here = dirname(fileURLToPath(import.meta.url));
const wholeProcess = join(here, '..', 'lib', 'whole-process-read.mjs');

export default async function warmRead(ctx) {
  const { quick, log } = ctx;
  const size = Number(process.env.BENCH_WARM_MIB || (quick ? 128 : 1024)) * MiB;
  const runs = Number(process.env.BENCH_RUNS || (quick ? 5 : 9));
  const peers = findPeers(log);
  const scratch = await scratchDir('warm');
  const root = join(scratch.dir, 'cache');
  let tier;
  // The same cache read under each `verify` mode (tier-fs checks blocks' CRC32Cs).
  const verifying = [];
  let tierNote = '';
  let fsOptions = {};
  try {
    // The cached copy, written through the fs tier when it loads, else as the plain file it would be.
    try {
      const { FS_OPTIONS, openFsTier } = await import('../lib/tierkit-contestants.mjs');
      fsOptions = FS_OPTIONS;
      tier = openFsTier(root);
      await tier.write(KEY, objectChunks(size), { size });
      for (const mode of ['never', 'first', 'always']) {
        verifying.push({ mode, tier: openFsTier(root, { verify: mode }) });
      }
    } catch (err) {
      tierNote = `tier-fs could not be used (${err.message.split('\n')[0]}): the file was written with plain fs and the tierkit rows are missing.`;
      log(tierNote);
      tier = undefined;
      const { mkdir } = await import('node:fs/promises');
      await mkdir(dirname(join(root, KEY)), { recursive: true });
      await writeObjectFile(join(root, KEY), size);
    }
    const path = join(root, KEY);
    await verifyFile(path, size);
    warmPageCache(path);

    // One buffer for every in-process reader: allocated (and touched) once, reused by each run.
    const target = Buffer.alloc(size);
    // Spawning a child forks this process, which leaves every page of `target`
    // copy-on-write: the next write to each page faults. A real reader spawns
    // nothing between reads, so after each child the buffer is written once,
    // untimed, and the in-process readers meet a buffer that is theirs again.
    const retouch = async () => {
      target.fill(0);
    };
    // Buffer.alloc of this size maps zero pages lazily: touch them now.
    await retouch();
    const list = [];
    if (tier) {
      list.push({
        id: 'tierkit',
        label: 'tierkit fs tier readInto (reused buffer)',
        run: async () => {
          const n = await tier.readInto(KEY, target);
          if (n !== size) throw new Error(`readInto returned ${n}`);
        },
      });
    }
    for (const v of verifying) {
      list.push({
        id: `tierkit-verify-${v.mode}`,
        label: `tierkit readInto, verify: '${v.mode}' (reused buffer)`,
        run: async () => {
          const n = await v.tier.readInto(KEY, target);
          if (n !== size) throw new Error(`readInto returned ${n}`);
        },
      });
    }
    list.push({
      id: 'pread',
      label: `plain positioned read loop, ${BLOCK / MiB} MiB blocks (reused buffer, no tierkit)`,
      run: async () => {
        const fh = await open(path, 'r');
        try {
          for (let at = 0; at < size; ) {
            const { bytesRead } = await fh.read(target, at, Math.min(BLOCK, size - at), at);
            if (bytesRead === 0) throw new Error('short file');
            at += bytesRead;
          }
        } finally {
          await fh.close();
        }
      },
    });
    list.push({
      id: 'pread-4',
      label: `plain positioned reads, 4 in parallel × ${BLOCK / MiB} MiB (reused buffer, no tierkit)`,
      run: async () => {
        const fh = await open(path, 'r');
        let next = 0;
        const worker = async () => {
          for (let at = next; at < size; at = next) {
            next += BLOCK;
            const len = Math.min(BLOCK, size - at);
            for (let done = 0; done < len; ) {
              const { bytesRead } = await fh.read(target, at + done, len - done, at + done);
              if (bytesRead === 0) throw new Error('short file');
              done += bytesRead;
            }
          }
        };
        try {
          await Promise.all([worker(), worker(), worker(), worker()]);
        } finally {
          await fh.close();
        }
      },
    });
    list.push({
      id: 'readFile',
      label: 'fs.promises.readFile (allocates each time)',
      run: async () => {
        const b = await readFile(path);
        if (b.length !== size) throw new Error('short read');
      },
    });
    list.push({
      id: 'cat',
      label: 'cat file > /dev/null (whole process)',
      run: () => timeProcess('sh', ['-c', 'cat "$1" > /dev/null', 'sh', path]),
      after: retouch,
    });
    if (peers.fio) {
      for (const jobs of [1, 2]) {
        list.push({
          id: `fio-${jobs}`,
          label: `fio read, bs ${BLOCK / MiB} MiB, psync, numjobs ${jobs}, --direct=0 (fio's figure)`,
          run: () => fioSeconds(peers.fio, path, size, jobs, BLOCK),
          after: retouch,
        });
      }
    }
    if (tier) {
      list.push({
        id: 'tierkit-process',
        label: 'node process: allocate + tierkit readInto (whole process)',
        run: () =>
          timeProcess(process.execPath, [
            wholeProcess,
            'tierkit',
            root,
            KEY,
            String(size),
            JSON.stringify(fsOptions),
          ]),
        after: retouch,
      });
    }
    list.push({
      id: 'readFile-process',
      label: 'node process: readFile (whole process)',
      run: () => timeProcess(process.execPath, [wholeProcess, 'readFile', path]),
      after: retouch,
    });

    const recs = await rounds(list, { runs, warmup: 1, log, bytes: size });
    const med = (id) => throughput(recs.get(id), size)?.median;
    const targets = targetsTable([
      {
        what: 'readInto, reused buffer ≥ 0.75 × cat',
        value: med('tierkit'),
        reference: med('cat'),
        refLabel: 'cat > /dev/null',
        needed: 0.75,
      },
      {
        what: "verify 'first' costs nothing on repeat reads (≥ 0.97 × 'never')",
        value: med('tierkit-verify-first'),
        reference: med('tierkit-verify-never'),
        refLabel: "verify 'never'",
        needed: 0.97,
      },
      {
        what: "verify 'always' ≥ 0.85 × 'never' (checks every block of every read)",
        value: med('tierkit-verify-always'),
        reference: med('tierkit-verify-never'),
        refLabel: "verify 'never'",
        needed: 0.85,
      },
      {
        what: 'readInto, reused buffer ≥ 4 × readFile',
        value: med('tierkit'),
        reference: med('readFile'),
        refLabel: 'fs.promises.readFile',
        needed: 4,
      },
    ]);
    const ratios = [
      ['tierkit readInto ÷ cat', med('tierkit'), med('cat')],
      ["verify 'first' ÷ verify 'never'", med('tierkit-verify-first'), med('tierkit-verify-never')],
      ["verify 'always' ÷ verify 'never'", med('tierkit-verify-always'), med('tierkit-verify-never')],
      ['tierkit readInto ÷ readFile', med('tierkit'), med('readFile')],
      ['tierkit readInto ÷ plain pread loop', med('tierkit'), med('pread')],
      ['tierkit readInto ÷ plain parallel preads', med('tierkit'), med('pread-4')],
      ['tierkit readInto ÷ fio numjobs 1', med('tierkit'), med('fio-1')],
      ['tierkit readInto ÷ fio numjobs 2', med('tierkit'), med('fio-2')],
      ['tierkit whole process ÷ cat', med('tierkit-process'), med('cat')],
      ['tierkit whole process ÷ readFile whole process', med('tierkit-process'), med('readFile-process')],
    ]
      .map(([k, a, b]) => `| ${k} | ${a && b ? `${fmt(a / b)}×` : 'n/a'} |`)
      .join('\n');
    const sizeText = size >= GiB ? `${size / GiB} GiB` : `${size / MiB} MiB`;
    const markdown = [
      `One ${sizeText} object in a tierkit fs cache folder, in the page cache (read once before the runs; one untimed warm-up round). In-process readers fill one ${sizeText} buffer allocated and touched once and reused by every run (readFile allocates its own each time); \`cat\` and the "node process" rows are whole processes timed from spawn to exit; fio's rows are fio's own bandwidth figure (fio reads every block into the same ${BLOCK / MiB} MiB buffer, which stays in the CPU cache, so it is an upper bound on the kernel side rather than a like-for-like reader). After every row that spawns a process the shared buffer is rewritten once, untimed: the fork leaves its pages copy-on-write, which would otherwise charge page faults to the next reader. Contestants run in rounds whose order rotates. Each figure is the median of ${runs} rounds with min and max.`,
      '',
      peersMarkdown(peers),
      tierNote ? `\n${tierNote}` : '',
      '',
      resultsTable(recs, size, {
        reference: tier ? 'tierkit' : 'pread',
        referenceLabel: tier ? 'tierkit' : 'pread loop',
      }),
      '',
      '| ratio | value |',
      '| --- | ---: |',
      ratios,
      '',
      targets.markdown,
    ].join('\n');
    return {
      markdown,
      data: {
        sizeBytes: size,
        runs,
        blockBytes: BLOCK,
        peers: { versions: peers.versions, installed: peers.installed, skipped: peers.skipped },
        results: recordsJson(recs, size),
        targets: targets.data,
      },
    };
  } finally {
    await tier?.close().catch(() => undefined);
    for (const v of verifying) await v.tier.close().catch(() => undefined);
    await scratch.cleanup();
    collect();
  }
}
