// Child processes the suites run: collect their output, fail on a non-zero exit.
import { spawn } from 'node:child_process';

/** Runs `command args…`; resolves to its stdout, rejects with the tail of its stderr on failure. */
export function runCollect(command, args, { label = command, tail = 800 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.once('error', reject);
    p.once('exit', (code) => {
      if (code !== 0) reject(new Error(`${label} exited ${code}: ${err.slice(-tail)}`));
      else resolve(out);
    });
  });
}

/** Seconds from spawning `command args…` (stdout discarded) to its exit; rejects on a non-zero exit. */
export function timeProcess(command, args, env = process.env) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    p.once('error', reject);
    p.once('exit', (code) => {
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      if (code === 0) resolve(s);
      else reject(new Error(`${command} exited ${code}: ${err.slice(-1000)}`));
    });
  });
}

/**
 * fio's own figure, in seconds, for a sequential buffered read of `path` by
 * `jobs` jobs of `block`-byte psync reads, each job its share of `size`.
 */
export async function fioSeconds(fio, path, size, jobs, block) {
  const share = Math.floor(size / jobs / block) * block;
  const args = [
    '--name=read',
    `--filename=${path}`,
    '--rw=read',
    `--bs=${block}`,
    '--direct=0',
    // fio drops the file's pages before it starts unless told not to: that would time the disk.
    '--invalidate=0',
    '--ioengine=psync',
    `--numjobs=${jobs}`,
    `--size=${share}`,
    `--offset_increment=${share}`,
    '--group_reporting',
    '--output-format=json',
  ];
  const out = await runCollect(fio, args, { label: 'fio', tail: 1000 });
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
  return (share * jobs) / job.read.bw_bytes;
}
