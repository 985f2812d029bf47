/**
 * The partial copies in a tier-fs cache (objects filled block by block: an
 * interrupted warm, a range read, a rank's tensors), read-only, for `ls --partial`.
 * Reads the layout tier-fs documents in its partial.ts: `.tierkit/partial/<hash>/`
 * with `info.json` (key, source size, block size, id) and `blocks.<id>`, 8 bytes
 * per block whose second word is the marker of a block present.
 */
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';

const SLOT = 8;
const MARKER = 0x424c4b31; // 'BLK1', tier-fs's marker of a block written and synced

export interface PartialCopy {
  readonly key: string;
  /** The object's size at the origin. */
  readonly size: number;
  readonly blockSize: number;
  readonly blocks: number;
  readonly blocksPresent: number;
  /** Bytes of the blocks present. */
  readonly bytesPresent: number;
  /** When a block was last added (ms). */
  readonly lastModified: number;
}

export async function listPartials(root: string, prefix = ''): Promise<PartialCopy[]> {
  const dir = join(root, '.tierkit', 'partial');
  const out: PartialCopy[] = [];
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith('.')) continue; // another process's private names
    const info = await readFile(join(dir, name, 'info.json'), 'utf8')
      .then(
        (t) =>
          JSON.parse(t) as { id?: unknown; key?: unknown; source?: { size?: unknown }; blockSize?: unknown },
      )
      .catch(() => undefined);
    if (
      !info ||
      typeof info.key !== 'string' ||
      typeof info.id !== 'string' ||
      !/^[0-9a-f]{16}$/.test(info.id) ||
      typeof info.source?.size !== 'number' ||
      typeof info.blockSize !== 'number' ||
      !(info.blockSize > 0)
    )
      continue;
    if (!info.key.startsWith(prefix)) continue;
    const size = info.source.size;
    const blockSize = info.blockSize;
    const blocks = Math.ceil(size / blockSize);
    const file = join(dir, name, `blocks.${info.id}`);
    const fh = await open(file, 'r').catch(() => undefined);
    if (!fh) continue; // retired meanwhile
    let slots: Buffer;
    let mtime: number;
    try {
      slots = Buffer.alloc(blocks * SLOT);
      await fh.read(slots, 0, slots.byteLength, 0);
      mtime = (await stat(file)).mtimeMs;
    } finally {
      await fh.close();
    }
    let blocksPresent = 0;
    let bytesPresent = 0;
    for (let b = 0; b < blocks; b++) {
      if (slots.readUInt32LE(b * SLOT + 4) !== MARKER) continue;
      blocksPresent++;
      bytesPresent += Math.min(blockSize, size - b * blockSize);
    }
    out.push({ key: info.key, size, blockSize, blocks, blocksPresent, bytesPresent, lastModified: mtime });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
