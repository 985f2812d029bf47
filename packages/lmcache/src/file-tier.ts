/**
 * A tier of one file per object whose on-disk layout is pluggable: where a key's
 * file lives, what header precedes the bytes, and which companion files go with
 * it. tier-gds (LMCache's GDS layout) and tier-3fs (LMCache's FS-connector
 * layout) are both this, with different layouts and I/O engines; it lives here so
 * neither tier depends on the other.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import {
  assertKey,
  assertPrefix,
  checkSize,
  fromSystemError,
  type ListOptions,
  type ObjectMeta,
  type OpOptions,
  type ReadIntoOptions,
  type ReadOptions,
  resolveIntoRange,
  resolveRange,
  type SourceMeta,
  TIER_SPEC,
  type Tier,
  type TierCapability,
  TierError,
  throwIfAborted,
  type WriteData,
  type WriteOptions,
} from '@tierkit/tier-core';
import { openToInspect } from './no-atime.js';

/** What a layout's header says of an object. */
export interface HeaderInfo {
  readonly size: number;
  readonly source?: SourceMeta;
}

/** Where and how a key's bytes are stored. */
export interface FileLayout {
  /** Bytes before the object's data (0 for a plain file). */
  readonly headerSize: number;
  /** The candidate files of a key, most likely first; writes go to the first. */
  paths(key: string): string[];
  /** The temporary name a write uses before it is renamed into place. */
  tempPath(path: string): string;
  /**
   * Encodes the header of an object of `size` bytes (exactly `headerSize` bytes).
   * `describe` is what the writer said of the bytes (e.g. a tensor's dtype and shape).
   */
  encodeHeader?(size: number, source: SourceMeta | undefined, key: string, describe?: unknown): Uint8Array;
  /** Decodes a header; undefined when it is not one of ours (the file is then ignored). */
  decodeHeader?(header: Uint8Array): HeaderInfo | undefined;
  /** Called once the data file is in place (e.g. LMCache's `.metadata` companion). */
  afterPublish?(path: string, header: Uint8Array | undefined): Promise<void>;
  /** Called before the data file is removed. */
  beforeDelete?(path: string): Promise<void>;
  /** Every stored object's key and file, in any order. */
  scan(): AsyncIterable<{ key: string; path: string }>;
}

/** Moves bytes between a file and memory. The POSIX engine is the default. */
export interface IoEngine {
  readonly name: string;
  read(fd: number, target: Uint8Array, position: number): Promise<number>;
  write(fd: number, source: Uint8Array, position: number): Promise<number>;
}

export interface FileTierConfig {
  readonly name: string;
  readonly layout: FileLayout;
  readonly engine?: IoEngine;
  /** fsync before the rename that publishes a write (default true). */
  readonly fsync?: boolean;
  /** Extra capabilities (e.g. deviceMemory for tier-gds). */
  readonly capability?: Partial<TierCapability>;
}

interface Opened {
  fh: FileHandle;
  path: string;
  size: number;
  etag: string;
  lastModified: number;
  source?: SourceMeta;
}

/** POSIX reads and writes through Node's file handles. */
export const nodeEngine: IoEngine = {
  name: 'posix',
  async read(fd, target, position) {
    const { read } = await import('node:fs');
    let done = 0;
    while (done < target.byteLength) {
      const n = await new Promise<number>((resolve, reject) =>
        read(fd, target, done, target.byteLength - done, position + done, (err, bytes) =>
          err ? reject(err) : resolve(bytes),
        ),
      );
      if (n === 0) break;
      done += n;
    }
    return done;
  },
  async write(fd, source, position) {
    const { write } = await import('node:fs');
    let done = 0;
    while (done < source.byteLength) {
      done += await new Promise<number>((resolve, reject) =>
        write(fd, source, done, source.byteLength - done, position + done, (err, bytes) =>
          err ? reject(err) : resolve(bytes),
        ),
      );
    }
    return done;
  },
};

export class FileTier implements Tier {
  readonly spec = TIER_SPEC;
  readonly name: string;
  readonly capability: TierCapability;
  readonly layout: FileLayout;
  protected engine: IoEngine;
  #fsync: boolean;
  #closed = false;

  constructor(config: FileTierConfig) {
    this.name = config.name;
    this.layout = config.layout;
    this.engine = config.engine ?? nodeEngine;
    this.#fsync = config.fsync ?? true;
    this.capability = Object.freeze({
      write: true,
      delete: true,
      list: true,
      rangeRead: true,
      readInto: true,
      etag: true,
      sourceMeta: !!config.layout.encodeHeader,
      deviceMemory: false,
      persistent: true,
      ...config.capability,
    });
  }

  /** The engine in use ('posix', 'native-pool', 'usrbio', …). */
  get engineName(): string {
    return this.engine.name;
  }

  async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    const o = await this.openObject(key, options, true);
    if (!o) return undefined;
    await o.fh.close();
    return this.#meta(key, o);
  }

  async read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    const o = await this.openObject(key, options);
    if (!o) return undefined;
    try {
      const r = resolveRange(options?.range, o.size, key);
      const out = new Uint8Array(r.length);
      await this.#readExact(o, out, r.offset, key, options);
      return out;
    } finally {
      await o.fh.close();
    }
  }

  async readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    const o = await this.openObject(key, options);
    if (!o) return undefined;
    try {
      const r = resolveIntoRange(target, options?.offset, options?.length, o.size, key);
      await this.#readExact(o, target.subarray(0, r.length), r.offset, key, options);
      return r.length;
    } finally {
      await o.fh.close();
    }
  }

  async readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    const o = await this.openObject(key, options);
    if (!o) return undefined;
    let r: { offset: number; length: number };
    try {
      r = resolveRange(options?.range, o.size, key);
    } catch (err) {
      await o.fh.close();
      throw err;
    }
    const start = this.layout.headerSize + r.offset;
    if (r.length === 0) {
      await o.fh.close();
      const { Readable } = await import('node:stream');
      return Readable.from([]);
    }
    // The open handle pins this version of the file even if it is replaced meanwhile.
    return o.fh.createReadStream({
      start,
      end: start + r.length - 1,
      autoClose: true,
      signal: options?.signal,
    });
  }

  async write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    return this.writeDescribed(key, data, options, undefined);
  }

  /** write() with a description of the bytes for the layout's header. */
  protected async writeDescribed(
    key: string,
    data: WriteData,
    options: WriteOptions | undefined,
    describe: unknown,
  ): Promise<ObjectMeta> {
    this.#check(key, options);
    const [path] = this.layout.paths(key);
    const temp = this.layout.tempPath(path);
    const hs = this.layout.headerSize;
    let fh: FileHandle | undefined;
    try {
      await mkdir(dirname(path), { recursive: true });
      fh = await open(temp, fsc.O_CREAT | fsc.O_EXCL | fsc.O_RDWR, 0o644);
      let size = 0;
      const put = async (chunk: Uint8Array) => {
        throwIfAborted(options?.signal, key);
        if (chunk.byteLength === 0) return;
        if (options?.size !== undefined && size + chunk.byteLength > options.size) {
          checkSize(size + chunk.byteLength, options.size, key);
        }
        await this.engine.write(fh!.fd, chunk, hs + size);
        size += chunk.byteLength;
      };
      if (data instanceof Uint8Array) await put(data);
      else for await (const chunk of data) await put(chunk);
      checkSize(size, options?.size, key);
      throwIfAborted(options?.signal, key);
      const header = this.layout.encodeHeader?.(size, options?.source, key, describe);
      if (header) await this.engine.write(fh.fd, header, 0);
      if (this.#fsync) await fh.sync();
      await fh.close();
      fh = undefined;
      throwIfAborted(options?.signal, key);
      await rename(temp, path);
      await this.layout.afterPublish?.(path, header);
      // Other candidate places may hold an older copy: a read must not find it.
      for (const other of this.layout.paths(key).slice(1)) await this.#removeFile(other);
    } catch (err) {
      await fh?.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      throw fromSystemError(err, { key, tier: this.name, op: 'write' });
    }
    const meta = await this.stat(key);
    if (!meta) throw new TierError('IO', `'${key}' vanished right after its write`, { key, tier: this.name });
    return meta;
  }

  async delete(key: string, options?: OpOptions): Promise<void> {
    this.#check(key, options);
    try {
      for (const path of this.layout.paths(key)) await this.#removeFile(path);
    } catch (err) {
      throw fromSystemError(err, { key, tier: this.name, op: 'delete' });
    }
  }

  async *list(prefix = '', options?: ListOptions): AsyncIterable<ObjectMeta> {
    assertPrefix(prefix, this.name);
    this.#open();
    const keys = new Set<string>();
    for await (const { key } of this.layout.scan()) {
      throwIfAborted(options?.signal);
      if (key.startsWith(prefix)) keys.add(key);
    }
    for (const key of [...keys].sort()) {
      throwIfAborted(options?.signal);
      const meta = await this.stat(key).catch(() => undefined);
      if (meta) yield meta;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Opens the current file of `key` and reads its header; undefined on a miss. */
  protected async openObject(
    key: string,
    options?: OpOptions & { ifMatch?: string },
    /** Only looking (stat, describe): the open leaves the file's atime, LMCache's last use, alone. */
    inspect = false,
  ): Promise<Opened | undefined> {
    this.#check(key, options);
    for (const path of this.layout.paths(key)) {
      let fh: FileHandle;
      try {
        fh = inspect ? await openToInspect(path) : await open(path, 'r');
      } catch (err) {
        if (
          (err as NodeJS.ErrnoException).code === 'ENOENT' ||
          (err as NodeJS.ErrnoException).code === 'ENOTDIR'
        ) {
          continue;
        }
        throw fromSystemError(err, { key, tier: this.name, op: 'open' });
      }
      try {
        const st = await fh.stat({ bigint: true });
        const fileSize = Number(st.size);
        let info: HeaderInfo | undefined = { size: fileSize - this.layout.headerSize };
        if (this.layout.decodeHeader) {
          const header = new Uint8Array(this.layout.headerSize);
          const n = await this.engine.read(fh.fd, header, 0);
          info = n === header.byteLength ? this.layout.decodeHeader(header) : undefined;
        }
        // A file that is not ours, or shorter than its header says, is not served.
        if (!info || info.size < 0 || fileSize < this.layout.headerSize + info.size) {
          await fh.close();
          continue;
        }
        const etag = `"${st.ino.toString(36)}-${st.mtimeNs.toString(36)}-${info.size.toString(36)}"`;
        if (options?.ifMatch !== undefined && options.ifMatch !== etag) {
          await fh.close();
          throw new TierError('CHANGED', `'${key}' changed: ETag ${etag}, expected ${options.ifMatch}`, {
            key,
            tier: this.name,
            retryable: false,
          });
        }
        throwIfAborted(options?.signal, key);
        return { fh, path, size: info.size, etag, lastModified: Number(st.mtimeMs), source: info.source };
      } catch (err) {
        await fh.close().catch(() => {});
        throw fromSystemError(err, { key, tier: this.name, op: 'read' });
      }
    }
    return undefined;
  }

  async #readExact(o: Opened, target: Uint8Array, offset: number, key: string, options?: OpOptions) {
    if (target.byteLength === 0) return;
    let n: number;
    try {
      n = await this.engine.read(o.fh.fd, target, this.layout.headerSize + offset);
    } catch (err) {
      throw fromSystemError(err, { key, tier: this.name, op: 'read' });
    }
    throwIfAborted(options?.signal, key);
    if (n !== target.byteLength) {
      throw new TierError('INTEGRITY', `'${key}' is shorter on disk than its header says`, {
        key,
        tier: this.name,
      });
    }
  }

  /** Removes one stored file and its companions (by path: what a scan found). */
  protected async removeFile(path: string): Promise<void> {
    await this.#removeFile(path);
  }

  async #removeFile(path: string): Promise<void> {
    await this.layout.beforeDelete?.(path);
    await rm(path, { force: true });
  }

  #meta(key: string, o: Opened): ObjectMeta {
    return {
      key,
      size: o.size,
      etag: o.etag,
      lastModified: o.lastModified,
      ...(o.source && this.capability.sourceMeta ? { source: o.source } : {}),
    };
  }

  #check(key: string, options: OpOptions | undefined): void {
    assertKey(key, this.name);
    this.#open();
    throwIfAborted(options?.signal, key);
  }

  #open(): void {
    if (this.#closed) throw new TierError('CLOSED', `tier '${this.name}' is closed`, { retryable: false });
  }
}

/** A unique temporary suffix, as LMCache writes it (".tmp" + 8 hex digits). */
export function tempSuffix(): string {
  return `.tmp${randomBytes(4).toString('hex')}`;
}
