/**
 * Test helper (not exported): a memory tier that also holds partial copies.
 */
import { MemoryTier } from './memory.js';
import type { BlockCache, ObjectMeta, PartialEntry, PartialOptions, SourceMeta } from './tier.js';

/**
 * A memory tier that also holds partial copies, to drive the stack's block
 * path here; tier-fs is the real BlockCache and has its own tests.
 */
export class MemoryBlockTier extends MemoryTier implements BlockCache {
  readonly partials = new Map<string, { source: SourceMeta; bytes: Uint8Array; present: Uint8Array }>();
  claims = new Set<string>();
  /** Bytes read back from partial copies (a stream handed blocks from memory reads none). */
  readBack = 0;

  async openPartial(key: string, source: SourceMeta, options: PartialOptions): Promise<PartialEntry> {
    let p = this.partials.get(key);
    if (!p || p.source.etag !== source.etag || p.source.size !== source.size) {
      p = {
        source,
        bytes: new Uint8Array(source.size),
        present: new Uint8Array(Math.ceil(source.size / options.blockSize)),
      };
      this.partials.set(key, p);
    }
    const part = p;
    const bs = options.blockSize;
    return {
      key,
      size: source.size,
      blockSize: bs,
      blockCount: part.present.length,
      has: (b) => part.present[b] === 1,
      refresh: async () => {},
      claim: async (b) => {
        const id = `${key}#${b}`;
        if (this.claims.has(id)) return false;
        this.claims.add(id);
        return true;
      },
      release: async (b) => {
        this.claims.delete(`${key}#${b}`);
      },
      writeBlock: async (b, bytes) => {
        part.bytes.set(bytes, b * bs);
        part.present[b] = 1;
      },
      readInto: async (target, offset) => {
        const first = Math.floor(offset / bs);
        const last = Math.floor((offset + target.byteLength - 1) / bs);
        for (let b = first; b <= last && target.byteLength > 0; b++) {
          if (part.present[b] !== 1) throw new Error(`block ${b} read before it was present`);
        }
        target.set(part.bytes.subarray(offset, offset + target.byteLength));
        this.readBack += target.byteLength;
      },
      publish: async (): Promise<ObjectMeta> => {
        const meta = await this.write(key, part.bytes, { source: part.source });
        this.partials.delete(key);
        return meta;
      },
      discard: async () => {
        this.partials.delete(key);
      },
      close: async () => {},
    };
  }
}
