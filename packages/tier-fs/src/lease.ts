/**
 * A held lock's lease: what the lock file says, and the heartbeat that keeps
 * it alive.
 *
 * The holder rewrites the file's content in place (a `beat` counter) every
 * quarter lease. Contenders never compare timestamps across machines: they
 * watch the content with their own clock, and a holder whose content has not
 * changed for a whole lease is taken over (lock.ts). So the holder fences
 * itself first: its lease counts from the start of its last beat that
 * completed in time, and it gives the lock up (`valid` false, `signal`
 * aborted) three quarters of a lease later unless a newer beat completed.
 * A contender cannot move before a full lease of unchanged content has
 * passed on its own clock, which starts after that beat began: the quarter
 * between is the margin for clocks that run at slightly different rates.
 */
import { promises as fsp } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { TierError } from '@tierkit/tier-core';
import type { Owner } from './owner.js';

/** The lock file's content. `pid`/`host` are for people; `scope` says whether `pid` can be asked of our kernel. */
export interface LockContent {
  readonly token: string;
  readonly pid: number;
  readonly host: string;
  readonly scope?: string;
  readonly leaseMs: number;
  /** Wall-clock time of acquisition (diagnostics only: never compared across machines). */
  readonly since: number;
  readonly beat: number;
}

/** The lock file is rewritten in place at one fixed length, so a beat never leaves a shorter tail behind. */
const PAD = 512;

export function lockContent(owner: Owner, token: string, leaseMs: number): LockContent {
  return {
    token,
    pid: owner.pid,
    host: owner.host,
    ...(owner.scope === undefined ? {} : { scope: owner.scope }),
    leaseMs,
    since: Date.now(),
    beat: 0,
  };
}

/** The file's bytes: JSON padded with spaces (JSON ignores them) to a length every later beat fits in. */
export function encodeContent(content: LockContent): Buffer {
  const widest = JSON.stringify({ ...content, beat: Number.MAX_SAFE_INTEGER }).length;
  const size = Math.ceil((widest + 1) / PAD) * PAD;
  return Buffer.from(JSON.stringify(content).padEnd(size, ' '));
}

export function parseContent(raw: string): Partial<LockContent> | undefined {
  try {
    const c = JSON.parse(raw) as unknown;
    return c !== null && typeof c === 'object' ? (c as Partial<LockContent>) : undefined;
  } catch {
    return undefined;
  }
}

/** The lease a contender waits out: the holder's own (it beats at a quarter of it), else ours. */
export function leaseOf(content: Partial<LockContent> | undefined, fallback: number): number {
  const l = content?.leaseMs;
  return typeof l === 'number' && Number.isFinite(l) && l > 0 ? l : fallback;
}

/** A held lock. `signal` aborts, and `valid` turns false, when the lease is lost. */
export interface FsLock {
  readonly name: string;
  readonly token: string;
  readonly signal: AbortSignal;
  /** Whether the previous holder's lock was taken over (it died or its lease lapsed). */
  readonly tookOver: boolean;
  /**
   * Whether the lease is still ours by our own clock. Check it right before
   * acting on what the lock guards: after it turns false another process
   * may hold the lock.
   */
  readonly valid: boolean;
  release(): Promise<void>;
}

export interface LeaseConfig {
  readonly leaseMs: number;
  readonly tier: string;
}

export class HeldLock implements FsLock {
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;
  readonly #content: LockContent;
  /** performance.now() after which the lease may be another's. */
  #deadline: number;
  #beating = false;
  #beats = 0;
  #released = false;
  #lost = false;

  constructor(
    readonly name: string,
    private readonly lockPath: string,
    content: LockContent,
    private readonly cfg: LeaseConfig,
    readonly tookOver: boolean,
    /** performance.now() from before the content became visible. */
    startedAt: number,
  ) {
    this.#content = content;
    this.#deadline = startedAt + (cfg.leaseMs * 3) / 4;
    this.#timer = setInterval(() => void this.#beat(), Math.max(5, Math.floor(cfg.leaseMs / 4)));
    this.#timer.unref();
  }

  get token(): string {
    return this.#content.token;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get valid(): boolean {
    return !this.#released && this.#inLease;
  }

  /** Not lost, and the last renewal is still within its lease. */
  get #inLease(): boolean {
    return !this.#lost && performance.now() < this.#deadline;
  }

  #lose(why: string): void {
    if (this.#lost) return;
    this.#lost = true;
    clearInterval(this.#timer);
    this.#controller.abort(
      new TierError('UNAVAILABLE', `lock '${this.name}' was lost: ${why}`, {
        tier: this.cfg.tier,
        retryable: true,
      }),
    );
  }

  async #beat(): Promise<void> {
    if (this.#released || this.#lost) return;
    if (performance.now() >= this.#deadline) {
      this.#lose('its lease lapsed before it could be renewed');
      return;
    }
    if (this.#beating) return;
    this.#beating = true;
    const started = performance.now();
    let fh: fsp.FileHandle | undefined;
    try {
      // Opened by name each time: on NFS an open revalidates (close-to-open), so
      // we read what the server has, and our close sends the beat to it.
      fh = await fsp.open(this.lockPath, 'r+');
      const raw = (await fh.readFile('utf8')) as string;
      if (parseContent(raw)?.token !== this.token) {
        this.#lose('another process took it over after its lease lapsed');
        return;
      }
      const bytes = encodeContent({ ...this.#content, beat: ++this.#beats });
      await fh.write(bytes, 0, bytes.byteLength, 0);
      await fh.close();
      fh = undefined;
      // A beat that completed after the deadline proves nothing: a contender may
      // already have judged the lease lapsed.
      if (performance.now() >= this.#deadline) this.#lose('its lease lapsed before it could be renewed');
      else this.#deadline = started + (this.cfg.leaseMs * 3) / 4;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ESTALE') this.#lose('its lock file was removed');
      // Other errors (a hiccup of the share): the next beat tries again, within the deadline.
    } finally {
      this.#beating = false;
      await fh?.close().catch(() => {});
    }
  }

  async #stillOurs(): Promise<boolean> {
    try {
      return parseContent(await fsp.readFile(this.lockPath, 'utf8'))?.token === this.token;
    } catch {
      return false;
    }
  }

  async release(): Promise<void> {
    if (this.#released) return;
    // Past the deadline the file may already be another contender's to take over:
    // removing it then could remove the lock of whoever took it. It is left to its lease.
    const mayRemove = this.valid;
    this.#released = true;
    clearInterval(this.#timer);
    // Checked again after the read: the lease may have run out while it was on its way (a slow share).
    if (mayRemove && (await this.#stillOurs()) && this.#inLease)
      await fsp.unlink(this.lockPath).catch(() => {});
  }
}
