/**
 * Cross-process, cross-node locks as files with a lease, safe on NFS (no
 * flock, which many NFS servers ignore silently).
 *
 * - Acquire: write the lock's content to a temp file, then link() it to the
 *   lock name. link fails with EEXIST when the lock is held, atomically, on
 *   NFS too.
 * - Liveness: the holder rewrites the content every quarter lease (lease.ts).
 *   A contender re-reads it (a fresh open: NFS close-to-open gives the
 *   server's copy) and judges it stale when it has not changed for a whole
 *   lease by the contender's own clock — no clock of another machine, no file
 *   time, and no pid or hostname, is trusted. The one shortcut: a holder in
 *   our own kernel and PID namespace whose pid is gone is dead now (owner.ts).
 * - Takeover: a contender that judged content R stale hard-links the lock to
 *   a name derived from R (`<lock>.t0-<digest>`). Only one contender can make
 *   that link; the winner reads it back, and if it still holds R (the holder
 *   did not beat meanwhile) renames its own lock over the lock name. The name
 *   is never free between the two holders, so a third process cannot slip in,
 *   and a contender whose judgment is out of date finds the link or the
 *   content taken and backs off. A winner that dies between its link and its
 *   rename leaves the link; one lease later the next level (`.t1-…`) is tried.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { abortError, TierError, throwIfAborted } from '@tierkit/tier-core';
import { encodeContent, type FsLock, HeldLock, leaseOf, lockContent, parseContent } from './lease.js';
import { OWNER_TAG, type Owner, provablyDead, SELF } from './owner.js';

export type { FsLock } from './lease.js';

export interface LockOptions {
  readonly signal?: AbortSignal;
  /** Give up with UNAVAILABLE (retryable) after this long (default: wait as long as it takes). */
  readonly timeoutMs?: number;
}

export interface LockConfig {
  readonly dir: string;
  readonly tmpDir: string;
  readonly leaseMs: number;
  readonly pollMs: number;
  readonly instance: string;
  readonly tier: string;
  /** Whom the locks taken here name as holder (default: this process; tests stand in for other nodes). */
  readonly owner?: Owner;
}

/** Takeover levels tried for one stale content before giving up this attempt. */
const LEVELS = 4;

let seq = 0;

type Judgment = { state: 'gone' } | { state: 'ours' } | { state: 'live' } | { state: 'stale'; raw: string };

export class LockFiles {
  readonly #owner: Owner;
  /** Lock or takeover-link path → the content first seen there and when (performance.now()). */
  readonly #seen = new Map<string, { raw: string; at: number }>();

  constructor(private readonly cfg: LockConfig) {
    this.#owner = cfg.owner ?? SELF;
  }

  path(name: string): string {
    return join(this.cfg.dir, `${name}.lock`);
  }

  /**
   * One attempt; undefined when someone else holds a live lock. A holder on
   * another node is only found dead by watching its lease: repeated attempts
   * (as `acquire` and block claims make) take it over once it lapsed.
   */
  async tryAcquire(name: string): Promise<FsLock | undefined> {
    return (await this.#attempt(name, false)).lock;
  }

  /**
   * One attempt. `sawDead`: this caller already saw the previous holder dead in
   * an earlier attempt (and lost the race for it), so the lock it gets now is
   * still one taken over: the news must not be lost with the race.
   */
  async #attempt(name: string, sawDead: boolean): Promise<{ lock?: FsLock; sawDead: boolean }> {
    const lockPath = this.path(name);
    let tookOver = sawDead;
    // A few rounds: a lock released between our link and our look is tried again at once.
    for (let round = 0; round < 3; round++) {
      const content = this.#content();
      const tmp = await this.#writeTemp(encodeContent(content));
      const startedAt = performance.now();
      let linked = false;
      try {
        await fsp.link(tmp, lockPath);
        linked = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        await fsp.unlink(tmp).catch(() => {});
      }
      if (linked) {
        this.#seen.delete(lockPath);
        return { lock: this.#held(name, lockPath, content, tookOver, startedAt), sawDead: tookOver };
      }
      const judged = await this.#judge(lockPath, content.token);
      if (judged.state === 'ours') {
        // Our link did succeed: over NFSv3 a retransmitted LINK whose first reply was lost says EEXIST.
        this.#seen.delete(lockPath);
        return { lock: this.#held(name, lockPath, content, tookOver, startedAt), sawDead: tookOver };
      }
      if (judged.state === 'gone') continue;
      if (judged.state === 'live') return { sawDead: tookOver };
      // We saw the holder dead: whoever of us then gets the lock must know it (the
      // capacity count is recounted after one), even if another contender wins this race.
      tookOver = true;
      const taken = await this.#takeOver(name, lockPath, judged.raw);
      if (taken === 'gone') continue;
      if (taken === 'busy') return { sawDead: tookOver };
      return { lock: taken, sawDead: true };
    }
    return { sawDead: tookOver };
  }

  /** Waits (polling with back-off: NFS has no change notification) until the lock is ours. */
  async acquire(name: string, options: LockOptions = {}): Promise<FsLock> {
    const { signal, timeoutMs } = options;
    const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
    let wait = this.cfg.pollMs;
    let sawDead = false;
    for (;;) {
      throwIfAborted(signal);
      const attempt = await this.#attempt(name, sawDead);
      if (attempt.lock) return attempt.lock;
      sawDead = attempt.sawDead;
      if (Date.now() >= deadline) {
        throw new TierError(
          'UNAVAILABLE',
          `lock '${name}' is held by another process; gave up after ${timeoutMs} ms`,
          { tier: this.cfg.tier, retryable: true },
        );
      }
      await sleep(Math.min(wait, Math.max(1, deadline - Date.now())) * (0.75 + Math.random() / 2), signal);
      wait = Math.min(wait * 2, 250);
    }
  }

  /**
   * Removes what dead holders left in the lock folder (at open): a lock named
   * `<prefix>…` whose holder is provably dead (our kernel and PID namespace,
   * pid gone) is taken over and released by the lock protocol itself, so a
   * live contender racing us is never wronged; a takeover link nobody has
   * touched for two leases was left by a contender that died between its link
   * and its rename (a live one is done within half a lease). The tier sweeps
   * block claims only: claims of blocks nobody will claim again (the block
   * size changed, the object was published) would stay forever; other locks
   * are left for their next contender, which must learn of the takeover (the
   * capacity lock's next holder recounts). Returns the number of locks removed.
   */
  async sweep(prefix: string): Promise<number> {
    let removed = 0;
    const names = await fsp.readdir(this.cfg.dir).catch(() => [] as string[]);
    for (const file of names) {
      const path = join(this.cfg.dir, file);
      const link = /^(.+)\.t\d+-[0-9a-f]+$/.exec(file);
      if (link) {
        const st = await fsp.lstat(path).catch(() => undefined);
        // link() sets the inode's ctime: the link's own age.
        if (st && Date.now() - st.ctimeMs > 2 * this.cfg.leaseMs) {
          await fsp.unlink(path).catch(() => {});
        }
        continue;
      }
      if (!file.startsWith(prefix) || !file.endsWith('.lock')) continue;
      const raw = await fsp.readFile(path, 'utf8').catch(() => undefined);
      if (raw === undefined || !provablyDead(parseContent(raw), this.#owner)) continue;
      const lock = await this.tryAcquire(file.slice(0, -'.lock'.length)).catch(() => undefined);
      if (!lock) continue;
      await lock.release();
      removed++;
    }
    return removed;
  }

  #content() {
    const token = `${this.#owner.pid}-${this.cfg.instance}-${(++seq).toString(36)}-${randomBytes(6).toString('hex')}`;
    return lockContent(this.#owner, token, this.cfg.leaseMs);
  }

  async #writeTemp(bytes: Buffer): Promise<string> {
    // The owner tag, not the hostname, in the name: see owner.ts.
    const tmp = join(this.cfg.tmpDir, `l-${process.pid}-${this.cfg.instance}-${++seq}@${OWNER_TAG}`);
    try {
      await fsp.writeFile(tmp, bytes, { flag: 'wx' });
    } catch (err) {
      // (A full disk can refuse the bytes after the name was made.)
      await fsp.unlink(tmp).catch(() => {});
      throw err;
    }
    return tmp;
  }

  #held(
    name: string,
    lockPath: string,
    content: ReturnType<typeof lockContent>,
    tookOver: boolean,
    at: number,
  ) {
    return new HeldLock(
      name,
      lockPath,
      content,
      { leaseMs: this.cfg.leaseMs, tier: this.cfg.tier },
      tookOver,
      at,
    );
  }

  /**
   * Whether the lock at `path` is stale: its holder provably dead, or its
   * content unchanged for a whole lease of our watching.
   */
  async #judge(path: string, token: string): Promise<Judgment> {
    const asked = performance.now();
    let raw: string;
    let mtimeMs: number;
    let fh: fsp.FileHandle | undefined;
    try {
      // The attributes of the open file: an NFS open has just fetched them from the server.
      fh = await fsp.open(path, 'r');
      raw = (await fh.readFile('utf8')) as string;
      mtimeMs = (await fh.stat()).mtimeMs;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESTALE') {
        this.#seen.delete(path);
        return { state: 'gone' };
      }
      throw err;
    } finally {
      await fh?.close().catch(() => {});
    }
    const content = parseContent(raw);
    if (content?.token === token) return { state: 'ours' };
    if (provablyDead(content, this.#owner)) return { state: 'stale', raw };
    // A changed mtime is a sign of life too: holders of earlier versions only touched it.
    const lapsed = this.#watch(path, `${mtimeMs}\n${raw}`, leaseOf(content, this.cfg.leaseMs), asked);
    return lapsed ? { state: 'stale', raw } : { state: 'live' };
  }

  /**
   * Records what was `observed` at `path`; true when the same was first seen
   * a lease before this look was asked (the first sighting counts from when
   * its read completed, which is after that content was written).
   */
  #watch(path: string, observed: string, leaseMs: number, asked: number): boolean {
    const seen = this.#seen.get(path);
    if (seen === undefined || seen.raw !== observed) {
      if (this.#seen.size >= 4096) this.#forgetOld();
      this.#seen.set(path, { raw: observed, at: performance.now() });
      return false;
    }
    // Kept: while it stays the same it stays lapsed (a lost race is retried at once).
    return asked - seen.at >= leaseMs;
  }

  #forgetOld(): void {
    const horizon = performance.now() - 16 * this.cfg.leaseMs;
    for (const [p, s] of this.#seen) if (s.at < horizon) this.#seen.delete(p);
    if (this.#seen.size >= 4096) this.#seen.clear();
  }

  /** Replaces the stale lock whose content was `raw` with ours: our lock, 'busy' (someone else's move), or 'gone'. */
  async #takeOver(name: string, lockPath: string, raw: string): Promise<HeldLock | 'busy' | 'gone'> {
    const digest = createHash('sha256').update(raw).digest('hex').slice(0, 24);
    const links: string[] = [];
    try {
      for (let level = 0; level < LEVELS; level++) {
        const link = join(this.cfg.dir, `${name}.t${level}-${digest}`);
        try {
          await fsp.link(lockPath, link);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT' || code === 'ESTALE') return 'gone';
          if (code !== 'EEXIST') throw err;
          // Another contender is taking it over: leave it to them, unless its link
          // has sat there for a lease with the lock unchanged (it died mid-way).
          if (!this.#watch(link, 'taking', this.cfg.leaseMs, performance.now())) return 'busy';
          const now = await fsp.readFile(lockPath, 'utf8').catch(() => undefined);
          if (now !== raw) return 'busy';
          links.push(link);
          continue;
        }
        const won = performance.now();
        links.push(link);
        // The link is the inode that was at the lock name: still R, or did the holder beat / a new lock arrive?
        if ((await fsp.readFile(link, 'utf8').catch(() => undefined)) !== raw) return 'busy';
        const content = this.#content();
        const tmp = await this.#writeTemp(encodeContent(content));
        // Too slow since the link (paused, or a sick share): a contender may have moved past our link.
        if (performance.now() - won > this.cfg.leaseMs / 2) {
          await fsp.unlink(tmp).catch(() => {});
          return 'busy';
        }
        const startedAt = performance.now();
        await fsp.rename(tmp, lockPath).catch(async (err: unknown) => {
          await fsp.unlink(tmp).catch(() => {});
          throw err;
        });
        this.#seen.delete(lockPath);
        return this.#held(name, lockPath, content, true, startedAt);
      }
      return 'busy';
    } finally {
      for (const l of links) {
        this.#seen.delete(l);
        await fsp.unlink(l).catch(() => {});
      }
    }
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
