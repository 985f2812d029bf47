/**
 * Last-use times that survive a restart (file atime does not: noatime mounts).
 *
 * `.tierkit/uses/` holds one append-only journal per live tier instance
 * (`<pid>-<instance>@<host>.log`, lines `<ms>\t<key>`; keys cannot contain tabs
 * or newlines) and a `snapshot.tsv` of the same format. Each process appends
 * only to its own file, so no two writers share a file (NFS-safe). On open the
 * snapshot and every journal are merged (latest time wins), a new snapshot is
 * written, and journals of dead processes are removed. A torn last line from a
 * crash is skipped. The order of lines is the order of use, which breaks ties
 * between uses in the same millisecond. Last-use times are hints: losing a few
 * only changes which cold entry is evicted first.
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { isOurTag, OWNER_TAG } from './owner.js';
import { isPidAlive } from './paths.js';

const SNAPSHOT = 'snapshot.tsv';
const JOURNAL = /^(\d+)-([0-9a-f]+)@(.+)\.log$/;
/** Journals of other hosts untouched for this long are folded into the snapshot and removed. */
const FOREIGN_JOURNAL_MS = 24 * 3600_000;

export class UseJournal {
  readonly #dir: string;
  readonly #tmpDir: string;
  readonly #file: string;
  #dirty = new Map<string, number>();
  #lines = 0;
  #flushing: Promise<void> = Promise.resolve();

  constructor(dir: string, tmpDir: string, instance: string) {
    this.#dir = dir;
    this.#tmpDir = tmpDir;
    this.#file = join(dir, `${process.pid}-${instance}@${OWNER_TAG}.log`);
  }

  record(key: string, ms: number): void {
    // Kept in the order of use: uses at the same millisecond keep their order on reload.
    this.#dirty.delete(key);
    this.#dirty.set(key, ms);
  }

  forget(key: string): void {
    this.#dirty.delete(key);
  }

  /**
   * Appends what was used since the last flush. When the journal has grown past
   * `compactAt` lines it is rewritten from `all` instead, so it stays bounded.
   */
  flush(all: () => Iterable<[string, number]>, compactAt: number): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      if (this.#dirty.size === 0) return;
      const batch = this.#dirty;
      this.#dirty = new Map();
      if (this.#lines + batch.size > compactAt) {
        const lines = [...all()].map(([k, ms]) => `${ms}\t${k}\n`);
        await this.#replace(this.#file, lines.join(''));
        this.#lines = lines.length;
        return;
      }
      let text = '';
      for (const [k, ms] of batch) text += `${ms}\t${k}\n`;
      await fsp.appendFile(this.#file, text);
      this.#lines += batch.size;
    });
    const done = this.#flushing;
    this.#flushing = done.catch(() => {});
    return done;
  }

  #replace(path: string, text: string): Promise<void> {
    return replaceFile(this.#tmpDir, path, text);
  }

  /** Reads the snapshot and all journals: the latest known use of each key. */
  async load(): Promise<{ uses: Map<string, number>; merged: string[] }> {
    const uses = new Map<string, number>();
    const merged: string[] = [];
    let names: string[];
    try {
      names = await fsp.readdir(this.#dir);
    } catch {
      return { uses, merged };
    }
    for (const name of names) {
      if (name !== SNAPSHOT && !JOURNAL.test(name)) continue;
      let text: string;
      try {
        text = await fsp.readFile(join(this.#dir, name), 'utf8');
      } catch {
        continue;
      }
      if (name !== SNAPSHOT) merged.push(name);
      parseInto(text, uses);
    }
    return { uses, merged };
  }

  /**
   * Writes a new snapshot of `uses` and removes journals whose writers are gone.
   * Best effort: on a full disk (or any failure to write) the journals stay as
   * they are, to be merged again next time — a cache must open on a full disk.
   */
  async compact(uses: Iterable<[string, number]>, merged: string[]): Promise<void> {
    let text = '';
    for (const [k, ms] of uses) text += `${ms}\t${k}\n`;
    try {
      await this.#replace(join(this.#dir, SNAPSHOT), text);
    } catch {
      return;
    }
    const now = Date.now();
    for (const name of merged) {
      const m = JOURNAL.exec(name);
      if (!m) continue;
      const path = join(this.#dir, name);
      const pid = Number(m[1]);
      let gone = isOurTag(m[3]!) && pid !== process.pid && !isPidAlive(pid);
      if (!gone) {
        const st = await fsp.stat(path).catch(() => undefined);
        gone = st !== undefined && now - st.mtimeMs > FOREIGN_JOURNAL_MS;
      }
      if (gone) await fsp.unlink(path).catch(() => {});
    }
  }
}

/** Never leaves its temp file behind, whether the write or the rename fails. */
async function replaceFile(tmpDir: string, path: string, text: string): Promise<void> {
  const tmp = join(tmpDir, `u-${process.pid}-${Math.random().toString(36).slice(2)}@${OWNER_TAG}`);
  try {
    await fsp.writeFile(tmp, text);
    await fsp.rename(tmp, path);
  } catch (err) {
    await fsp.unlink(tmp).catch(() => {});
    throw err;
  }
}

function parseInto(text: string, uses: Map<string, number>): void {
  let start = 0;
  for (;;) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) break; // a line without its newline is torn: skip it
    const line = text.slice(start, nl);
    start = nl + 1;
    const tab = line.indexOf('\t');
    if (tab <= 0) continue;
    const ms = Number(line.slice(0, tab));
    const key = line.slice(tab + 1);
    // Keys are not validated here: only keys found on disk by the walk are looked up.
    if (!Number.isFinite(ms)) continue;
    const prev = uses.get(key);
    if (prev === undefined || ms >= prev) {
      // A later line is a later use, even within the same millisecond: it moves to the end.
      uses.delete(key);
      uses.set(key, ms);
    }
  }
}
