// The pool's worker: blocking positioned I/O and checksums, one task at a time
// per thread. Descriptors are process-wide, so a worker uses the main thread's
// fd as is; the caller keeps it open until the task settles.
import { createHash } from 'node:crypto';
import { readSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';

const STEP = 4 * 1024 * 1024;
let scratch = Buffer.allocUnsafe(0);

function scratchOf(n) {
  if (scratch.byteLength < n) scratch = Buffer.allocUnsafe(n);
  return scratch.subarray(0, n);
}

/** Reads until `view` is full or the file ends; returns the bytes read. */
function readFully(fd, view, position) {
  let at = 0;
  while (at < view.byteLength) {
    const n = readSync(fd, view, at, view.byteLength - at, position + at);
    if (n === 0) break;
    at += n;
  }
  return at;
}

export default function run(task) {
  switch (task.op) {
    case 'read':
      return readFully(task.fd, new Uint8Array(task.buffer, task.byteOffset, task.length), task.position);
    case 'write': {
      const view = new Uint8Array(task.buffer, task.byteOffset, task.length);
      let at = 0;
      while (at < view.byteLength)
        at += writeSync(task.fd, view, at, view.byteLength - at, task.position + at);
      return task.crc ? crc32(view) : 0;
    }
    case 'crc32': {
      // One CRC per range; -1 when the file ends inside the range.
      const out = new Array(task.ranges.length / 2);
      for (let i = 0; i < out.length; i++) {
        const position = task.ranges[2 * i];
        const length = task.ranges[2 * i + 1];
        const view = scratchOf(length);
        out[i] = readFully(task.fd, view, position) === length ? crc32(view) : -1;
      }
      return out;
    }
    case 'sha256': {
      const hash = createHash('sha256');
      const end = task.length < 0 ? Number.POSITIVE_INFINITY : task.position + task.length;
      let size = 0;
      for (let pos = task.position; pos < end; ) {
        const view = scratchOf(Math.min(STEP, end - pos));
        const n = readFully(task.fd, view, pos);
        if (n === 0) break;
        hash.update(view.subarray(0, n));
        pos += n;
        size += n;
      }
      return { hex: hash.digest('hex'), size };
    }
    default:
      throw new Error(`@tierkit/pool worker: unknown op ${task.op}`);
  }
}
