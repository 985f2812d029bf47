/**
 * Cross-process locks as files with a lease, safe on NFS (no flock, which many
 * NFS servers ignore silently).
 *
 * - Acquire: write the lock's content to a temp file, then link() it to the lock
 *   name. link fails with EEXIST when the lock is held, atomically, on NFS too.
 * - A lock is stale when its lease expired (mtime + leaseMs; the holder touches
 *   it every leaseMs/3) or when its holder is on this host and its pid is dead.
 * - Takeover: rename the stale lock to a private name, then read it back. Only
 *   one contender's rename can succeed for a given lock file; if what was moved
 *   is not the stale content that was judged (someone re-took the lock in
 *   between), it is linked back. A holder that finds its token gone on refresh
 *   knows it lost the lock and aborts its `signal`.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { abortError, TierError, throwIfAborted } from '@tierkit/tier-core';
import { HOST, HOST_SAFE, isPidAlive } from './paths.js';

export interface LockOptions {
  readonly signal?: AbortSignal;
  /** Give up with UNAVAILABLE (retryable) after this long (default: wait as long as it takes). */
  readonly timeoutMs?: number;
}

/** A held lock. `signal` aborts if the lock is lost (taken over after the lease lapsed). */
export interface FsLock {
  readonly name: string;
  readonly token: string;
  readonly signal: AbortSignal;
  /** Whether the previous holder's lock was taken over (it died or its lease lapsed). */
  readonly tookOver: boolean;
  release(): Promise<void>;
}

interface LockContent {
  readonly pid: number;
  readonly host: string;
  readonly token: string;
  readonly leaseMs: number;
  readonly since: number;
}

export interface LockConfig {
  readonly dir: string;
  readonly tmpDir: string;
  readonly leaseMs: number;
  readonly pollMs: number;
  readonly instance: string;
  readonly tier: string;
}

let seq = 0;

export class LockFiles {
  constructor(private readonly cfg: LockConfig) {}

  path(name: string): string {
    return join(this.cfg.dir, `${name}.lock`);
  }

  /** One attempt; undefined when someone else holds a live lock. */
  async tryAcquire(name: string): Promise<FsLock | undefined> {
    return (await this.#attempt(name, false)).lock;
  }

  /**
   * One attempt. `sawDead`: this caller already saw the previous holder dead in
   * an earlier attempt (and lost the race for the freed name), so the lock it
   * gets now is still one taken over: the news must not be lost with the race.
   */
  async #attempt(name: string, sawDead: boolean): Promise<{ lock?: FsLock; sawDead: boolean }> {
    const lockPath = this.path(name);
    let tookOver = sawDead;
    // A few rounds: a takeover frees the name, but another contender may win it.
    for (let round = 0; round < 4; round++) {
      const token = `${process.pid}-${this.cfg.instance}-${(++seq).toString(36)}-${randomBytes(4).toString('hex')}`;
      const content: LockContent = {
        pid: process.pid,
        host: HOST,
        token,
        leaseMs: this.cfg.leaseMs,
        since: Date.now(),
      };
      const tmp = join(this.cfg.tmpDir, `l-${process.pid}-${this.cfg.instance}-${seq}@${HOST_SAFE}`);
      await fsp.writeFile(tmp, JSON.stringify(content), { flag: 'wx' });
      let linked = false;
      try {
        await fsp.link(tmp, lockPath);
        linked = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        await fsp.unlink(tmp).catch(() => {});
      }
      if (linked) return { lock: new HeldLock(name, lockPath, token, this.cfg, tookOver), sawDead: tookOver };
      const taken = await this.#takeOverIfStale(lockPath);
      if (taken === false) return { sawDead: tookOver };
      // We saw the holder dead (and removed its lock, or saw another contender do it): whoever
      // of us then gets the lock must know the previous holder died (the capacity count is
      // recounted after one). A lock that vanished before we could judge it is no news.
      if (taken !== 'gone') tookOver = true;
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
          {
            tier: this.cfg.tier,
            retryable: true,
          },
        );
      }
      await sleep(Math.min(wait, Math.max(1, deadline - Date.now())) * (0.75 + Math.random() / 2), signal);
      wait = Math.min(wait * 2, 250);
    }
  }

  /**
   * 'removed' when we removed the stale lock at `lockPath`, 'stale-gone' when we
   * judged it stale but another contender removed it first, 'gone' when it was
   * gone before we could judge it, false when it is live.
   */
  async #takeOverIfStale(lockPath: string): Promise<'removed' | 'stale-gone' | 'gone' | false> {
    let raw: string;
    let mtimeMs: number;
    try {
      [raw, mtimeMs] = await Promise.all([
        fsp.readFile(lockPath, 'utf8'),
        fsp.stat(lockPath).then((s) => s.mtimeMs),
      ]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      throw err;
    }
    if (!isStale(raw, mtimeMs, this.cfg.leaseMs)) return false;
    const aside = join(
      this.cfg.tmpDir,
      `s-${process.pid}-${this.cfg.instance}-${++seq}-${randomBytes(4).toString('hex')}@${HOST_SAFE}`,
    );
    try {
      await fsp.rename(lockPath, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'stale-gone';
      throw err;
    }
    const moved = await fsp.readFile(aside, 'utf8').catch(() => '');
    if (moved !== raw) {
      // We moved a fresh lock that someone took between our read and our rename: put it back.
      await fsp.link(aside, lockPath).catch(() => {});
      await fsp.unlink(aside).catch(() => {});
      return false;
    }
    await fsp.unlink(aside).catch(() => {});
    return 'removed';
  }
}

function isStale(raw: string, mtimeMs: number, defaultLease: number): boolean {
  let content: Partial<LockContent> | undefined;
  try {
    content = JSON.parse(raw) as Partial<LockContent>;
  } catch {
    content = undefined;
  }
  const lease = typeof content?.leaseMs === 'number' && content.leaseMs > 0 ? content.leaseMs : defaultLease;
  if (Date.now() > mtimeMs + lease) return true;
  if (content?.host === HOST && typeof content.pid === 'number' && content.pid !== process.pid) {
    return !isPidAlive(content.pid);
  }
  return false;
}

class HeldLock implements FsLock {
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;
  #released = false;

  constructor(
    readonly name: string,
    private readonly lockPath: string,
    readonly token: string,
    private readonly cfg: LockConfig,
    readonly tookOver: boolean,
  ) {
    this.#timer = setInterval(() => void this.#refresh(), Math.max(10, Math.floor(cfg.leaseMs / 3)));
    this.#timer.unref();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  async #refresh(): Promise<void> {
    if (this.#released) return;
    if (!(await this.#stillOurs())) {
      clearInterval(this.#timer);
      this.#controller.abort(
        new TierError(
          'UNAVAILABLE',
          `lock '${this.name}' was lost: its lease lapsed and another process took it`,
          {
            tier: this.cfg.tier,
            retryable: true,
          },
        ),
      );
      return;
    }
    const now = new Date();
    await fsp.utimes(this.lockPath, now, now).catch(() => {});
  }

  async #stillOurs(): Promise<boolean> {
    try {
      const content = JSON.parse(await fsp.readFile(this.lockPath, 'utf8')) as LockContent;
      return content.token === this.token;
    } catch {
      return false;
    }
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#timer);
    if (await this.#stillOurs()) await fsp.unlink(this.lockPath).catch(() => {});
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
