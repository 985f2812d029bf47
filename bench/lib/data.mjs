// Test data for the suites: random-looking bytes made fast and reproducibly
// (an AES-CTR keystream), checked by regenerating the expected bytes at any
// offset instead of keeping a second copy of the object around.
import { spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const KEY = Buffer.alloc(32, 7);
const CHUNK = 8 * 1024 * 1024;

/** A CTR counter block for byte `offset` (a multiple of 16). */
function ivAt(offset) {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(offset / 16), 8);
  return iv;
}

/** The object's bytes [offset, offset+length), offset a multiple of 16. */
export function expectedBytes(offset, length) {
  if (offset % 16 !== 0) throw new Error('offset must be a multiple of 16');
  return createCipheriv('aes-256-ctr', KEY, ivAt(offset)).update(Buffer.alloc(length));
}

/** Yields the object in 8 MiB chunks (a fresh buffer each: consumers may keep them). */
export async function* objectChunks(size) {
  const cipher = createCipheriv('aes-256-ctr', KEY, ivAt(0));
  const zeros = Buffer.alloc(CHUNK);
  for (let at = 0; at < size; at += CHUNK) {
    const n = Math.min(CHUNK, size - at);
    yield cipher.update(n === CHUNK ? zeros : zeros.subarray(0, n));
  }
}

/** Writes the object to `path` with plain fs. */
export async function writeObjectFile(path, size) {
  const fh = await open(path, 'w');
  try {
    let at = 0;
    for await (const chunk of objectChunks(size)) {
      await fh.write(chunk, 0, chunk.length, at);
      at += chunk.length;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Checks a file holds the object: its size, plus 64 KiB samples at 16 spread
 * offsets and the tail. Cheap enough to run after every timed fill.
 */
export async function verifyFile(path, size) {
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat();
    if (st.size !== size) throw new Error(`${path}: size ${st.size}, expected ${size}`);
    const win = Math.min(64 * 1024, size);
    const offsets = new Set([0, Math.floor((size - win) / 16) * 16]);
    for (let i = 1; i < 16; i++) offsets.add(Math.floor((size * i) / 16 / 16) * 16);
    const buf = Buffer.alloc(win);
    for (const off of offsets) {
      const len = Math.min(win, size - off);
      const { bytesRead } = await fh.read(buf, 0, len, off);
      if (bytesRead !== len || !buf.subarray(0, len).equals(expectedBytes(off, len))) {
        throw new Error(`${path}: bytes at ${off} differ from the object`);
      }
    }
  } finally {
    await fh.close();
  }
}

/** Drops the page cache (needs root and a writable /proc/sys). Returns whether it worked. */
export function dropCaches() {
  const r = spawnSync('sh', ['-c', 'sync && echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
  return r.status === 0;
}

/** Reads a file once so it sits in the page cache. */
export function warmPageCache(path) {
  spawnSync('sh', ['-c', `cat "$1" > /dev/null`, 'sh', path], { stdio: 'ignore' });
}

/** A fresh scratch folder (BENCH_TMP or the OS temp dir); `cleanup()` removes it. */
export async function scratchDir(label) {
  const base = process.env.BENCH_TMP || tmpdir();
  if (!existsSync(base)) mkdirSync(base, { recursive: true });
  const dir = await mkdtemp(join(base, `tierkit-bench-${label}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Frees what a run left behind, when node runs with --expose-gc. */
export function collect() {
  globalThis.gc?.();
}
