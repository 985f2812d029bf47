/**
 * Bytes through 3FS USRBIO rings, as real 3FS takes them (src/lib/api/UsrbIo.cc,
 * src/fuse/IoRing.cc):
 * - no zero-length io, ever (hf3fs_prep_io refuses len == 0);
 * - io_depth > 0: the io worker takes exactly io_depth ios at a time and never a
 *   partial batch, so every submission is a multiple of io_depth: the window is cut
 *   into that many non-empty pieces (a window shorter than io_depth bytes is padded
 *   with 1-byte repeats of its first byte, harmless for reads and for writes);
 * - at most entries - 1 ios in flight (the worker keeps one completion slot free);
 * - a failure never leaves prepared ios behind: ios prepared before a failed prep
 *   are submitted and reaped (padded to a whole batch), and a ring whose state is
 *   uncertain (a timeout, a failed drain) is destroyed with its iov and made anew;
 * - one waiter per ring: each lane (LMCache's io thread) serves one transfer at a time.
 */

import type { IoEngine } from '@tierkit/lmcache';
import { Hf3fsIor, Hf3fsIov, usrbio } from '@tierkit/native';
import { TierError } from '@tierkit/tier-core';

/** One io of a window: `len` bytes at `at` (from the window's start, in file and iov alike). */
export interface PlannedIo {
  readonly at: number;
  readonly len: number;
  /** A repeat that only fills an io_depth batch; its result is not counted. */
  readonly repeat: boolean;
}

/**
 * The ios for `span` bytes (span > 0): pieces of at most `pieceSize` bytes, their
 * count a multiple of `ioDepth` when it is > 0, none empty.
 */
export function planIos(span: number, pieceSize: number, ioDepth: number): PlannedIo[] {
  if (!(span > 0) || !(pieceSize > 0)) throw new RangeError(`planIos: span ${span}, pieceSize ${pieceSize}`);
  const n = Math.ceil(span / pieceSize);
  if (ioDepth <= 0 || n % ioDepth === 0) {
    return Array.from({ length: n }, (_, i) => ({
      at: i * pieceSize,
      len: Math.min(pieceSize, span - i * pieceSize),
      repeat: false,
    }));
  }
  const k = Math.ceil(n / ioDepth) * ioDepth;
  if (span >= k) {
    // k near-equal pieces: none longer than pieceSize since k >= n.
    const base = Math.floor(span / k);
    const extra = span % k;
    const out: PlannedIo[] = [];
    let at = 0;
    for (let i = 0; i < k; i++) {
      const len = base + (i < extra ? 1 : 0);
      out.push({ at, len, repeat: false });
      at += len;
    }
    return out;
  }
  // Fewer bytes than a batch: one byte per io, then repeats of the first byte.
  return Array.from({ length: k }, (_, i) =>
    i < span ? { at: i, len: 1, repeat: false } : { at: 0, len: 1, repeat: true },
  );
}

/** Ios one submission may hold: entries - 1, rounded down to whole io_depth batches. */
export function maxIosInFlight(entries: number, ioDepth: number): number {
  const room = entries - 1;
  return ioDepth > 0 ? Math.floor(room / ioDepth) * ioDepth : room;
}

export interface UsrbioEngineOptions {
  readonly mountPoint: string;
  readonly iovSize: number;
  readonly iorEntries: number;
  readonly ioDepth: number;
  readonly numaId: number;
  readonly ioThreadNum: number;
  /** The ring timeout (ms): how long io_depth < 0 waits to fill a batch. */
  readonly timeoutMs: number;
  /** Largest single io (default 4 MiB). */
  readonly pieceSize?: number;
  /** How long a submission may take before the lane is given up (default 30 s). */
  readonly ioTimeoutMs?: number;
}

interface Lane {
  iov: Hf3fsIov;
  rring: Hf3fsIor;
  wring: Hf3fsIor;
}

const REPEAT = 0x40000000;

export class UsrbioEngine implements IoEngine {
  readonly name = 'usrbio';
  readonly pieceSize: number;
  readonly maxIos: number;
  readonly windowBytes: number;
  /** Lanes given up after a failure (for tests and metrics). */
  retiredLanes = 0;
  readonly #o: UsrbioEngineOptions;
  #lanes = 0;
  #free: Lane[] = [];
  #waiters: ((lane: Lane | undefined) => void)[] = [];
  #fdRefs = new Map<number, number>();
  #closed = false;

  constructor(options: UsrbioEngineOptions) {
    this.#o = options;
    this.pieceSize = options.pieceSize ?? 4 * 1024 * 1024;
    this.maxIos = maxIosInFlight(options.iorEntries, options.ioDepth);
    if (this.maxIos < 1) {
      throw new TierError(
        'INVALID_ARGUMENT',
        `3FS tier: io_depth ${options.ioDepth} leaves no room in a ring of ${options.iorEntries} entries`,
        { retryable: false },
      );
    }
    this.windowBytes = Math.min(options.iovSize, this.pieceSize * this.maxIos);
  }

  read(fd: number, target: Uint8Array, position: number): Promise<number> {
    return this.#transfer(fd, target, position, true);
  }

  write(fd: number, source: Uint8Array, position: number): Promise<number> {
    return this.#transfer(fd, source, position, false);
  }

  #newLane(): Lane {
    const o = this.#o;
    const iov = new Hf3fsIov(o.mountPoint, o.iovSize, { numa: o.numaId });
    const ring = (forRead: boolean) =>
      new Hf3fsIor(o.mountPoint, {
        entries: o.iorEntries,
        forRead,
        ioDepth: o.ioDepth,
        timeoutMs: o.timeoutMs,
        numa: o.numaId,
      });
    let rring: Hf3fsIor | undefined;
    try {
      rring = ring(true);
      return { iov, rring, wring: ring(false) };
    } catch (err) {
      rring?.destroy();
      iov.destroy();
      throw err;
    }
  }

  async #acquire(): Promise<Lane> {
    if (this.#closed) throw new TierError('CLOSED', 'the USRBIO engine is closed', { retryable: false });
    const lane = this.#free.pop();
    if (lane) return lane;
    if (this.#lanes < this.#o.ioThreadNum) {
      this.#lanes++;
      try {
        return this.#newLane();
      } catch (err) {
        this.#lanes--;
        throw err;
      }
    }
    const next = await new Promise<Lane | undefined>((resolve) => this.#waiters.push(resolve));
    return next ?? this.#acquire();
  }

  #release(lane: Lane): void {
    if (this.#closed) {
      lane.rring.destroy();
      lane.wring.destroy();
      lane.iov.destroy();
      return;
    }
    const next = this.#waiters.shift();
    if (next) next(lane);
    else this.#free.push(lane);
  }

  /** Gives a lane up: its rings (and any ios in them) and its iov go; a waiter may build a new one. */
  #retire(lane: Lane): void {
    this.retiredLanes++;
    this.#lanes--;
    for (const r of [lane.rring, lane.wring]) {
      try {
        r.destroy();
      } catch {
        // already gone
      }
    }
    lane.iov.destroy();
    this.#waiters.shift()?.(undefined);
  }

  #register(fd: number): void {
    const n = this.#fdRefs.get(fd) ?? 0;
    if (n === 0) usrbio.registerFd(fd);
    this.#fdRefs.set(fd, n + 1);
  }

  #unregister(fd: number): void {
    const n = (this.#fdRefs.get(fd) ?? 1) - 1;
    if (n > 0) {
      this.#fdRefs.set(fd, n);
      return;
    }
    this.#fdRefs.delete(fd);
    usrbio.deregisterFd(fd);
  }

  async #transfer(fd: number, bytes: Uint8Array, position: number, read: boolean): Promise<number> {
    if (bytes.byteLength === 0) return 0; // nothing to move, and no empty io
    const lane = await this.#acquire();
    const state = { healthy: true };
    try {
      this.#register(fd);
    } catch (err) {
      this.#release(lane);
      throw ioError(err, read);
    }
    try {
      let done = 0;
      while (done < bytes.byteLength) {
        const span = Math.min(this.windowBytes, bytes.byteLength - done);
        const moved = await this.#window(lane, state, fd, bytes, done, span, position + done, read);
        done += moved;
        if (moved < span) break; // end of file
      }
      return done;
    } finally {
      this.#unregister(fd);
      if (state.healthy) this.#release(lane);
      else this.#retire(lane);
    }
  }

  async #window(
    lane: Lane,
    state: { healthy: boolean },
    fd: number,
    bytes: Uint8Array,
    from: number,
    span: number,
    filePos: number,
    read: boolean,
  ): Promise<number> {
    const ring = read ? lane.rring : lane.wring;
    const plan = planIos(span, this.pieceSize, this.#o.ioDepth);
    if (!read) lane.iov.bytes(0, span).set(bytes.subarray(from, from + span));
    let prepared = 0;
    try {
      for (const [i, io] of plan.entries()) {
        ring.prep(lane.iov, fd, filePos + io.at, io.len, io.at, io.repeat ? REPEAT + i : i + 1);
        prepared++;
      }
    } catch (err) {
      // Leave nothing prepared: run what was prepared (as whole batches), then report.
      if (prepared > 0 && !(await this.#drain(ring, lane, fd, filePos, prepared))) state.healthy = false;
      throw ioError(err, read);
    }
    ring.submit();
    let results: { userdata: number; result: number }[];
    try {
      results = await this.#reap(ring, plan.length);
    } catch (err) {
      state.healthy = false; // ios may still be in flight: this ring and iov are not reused
      throw err;
    }
    const failed = results.find((c) => c.result < 0);
    if (failed) {
      throw new TierError('IO', `3FS ${read ? 'read' : 'write'} failed: errno ${-failed.result}`, {
        retryable: true,
        details: { errno: -failed.result },
      });
    }
    const got = new Map(results.filter((c) => c.userdata < REPEAT).map((c) => [c.userdata - 1, c.result]));
    let moved = 0;
    for (const [i, io] of plan.entries()) {
      if (io.repeat) continue;
      const r = got.get(i) ?? 0;
      if (!read && r !== io.len) {
        throw new TierError('IO', `3FS short write: ${r} of ${io.len} bytes`, { retryable: true });
      }
      moved += r;
      if (r < io.len) break; // a short read: the file ends here
    }
    if (read) bytes.set(lane.iov.bytes(0, moved), from);
    return moved;
  }

  /** Completes `prepared` ios left in a ring by a failed prep; false when the ring could not be emptied. */
  async #drain(ring: Hf3fsIor, lane: Lane, fd: number, filePos: number, prepared: number): Promise<boolean> {
    try {
      let count = prepared;
      const depth = this.#o.ioDepth;
      while (depth > 0 && count % depth !== 0) {
        ring.prep(lane.iov, fd, filePos, 1, 0, REPEAT);
        count++;
      }
      ring.submit();
      await this.#reap(ring, count);
      return true;
    } catch {
      return false;
    }
  }

  async #reap(ring: Hf3fsIor, count: number): Promise<{ userdata: number; result: number }[]> {
    const out: { userdata: number; result: number }[] = [];
    const limit = this.#o.ioTimeoutMs ?? 30_000;
    while (out.length < count) {
      const cqes = await ring.wait(count - out.length, 1, limit);
      if (cqes.length === 0) {
        throw new TierError('IO', `3FS ring timed out after ${out.length} of ${count} ios`, {
          retryable: true,
        });
      }
      for (const c of cqes) out.push({ userdata: c.userdata, result: c.result });
    }
    return out;
  }

  close(): void {
    this.#closed = true;
    for (const l of this.#free) {
      l.rring.destroy();
      l.wring.destroy();
      l.iov.destroy();
    }
    this.#free = [];
    for (const w of this.#waiters.splice(0)) w(undefined);
  }
}

function ioError(err: unknown, read: boolean): TierError {
  if (err instanceof TierError) return err;
  const e = err as { message?: string; errno?: number };
  return new TierError('IO', `3FS ${read ? 'read' : 'write'}: ${e?.message ?? String(err)}`, {
    retryable: true,
    cause: err,
    ...(e?.errno !== undefined ? { details: { errno: e.errno } } : {}),
  });
}
