/**
 * Digests off the event loop: a few worker threads, each holding the running
 * digest states of the fills assigned to it. MD5 and SHA must see the bytes in
 * order, so one fill's state lives in one thread (piscina-style stateless tasks
 * cannot hold it); fills are spread over the threads.
 *
 * Blocks are copied into fresh memory and transferred (the fill reuses its
 * buffers at once). A thread keeps the process alive only while someone awaits
 * its answer (`finish`, `drain`): an abandoned session never holds a process.
 */
import * as crypto from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import * as zlib from 'node:zlib';
import { type DigestSpec, type DigestState, digestKit } from './digest-kit.js';

/**
 * Objects up to this size are digested on the calling thread: well under a
 * millisecond of CPU, where a trip to a digest thread would queue behind the
 * big objects' blocks (many small files warmed next to big shards).
 */
export const INLINE_DIGEST_BYTES = 256 * 1024;

let localKit: ReturnType<typeof digestKit> | undefined;
function kitHere() {
  localKit ??= digestKit((id) => (id === 'node:crypto' ? crypto : zlib));
  return localKit;
}

type Msg =
  | { t: 'open'; id: number; specs: DigestSpec[] }
  | { t: 'data'; id: number; buf: ArrayBuffer }
  | { t: 'end'; id: number }
  | { t: 'drop'; id: number };
type Reply =
  | { t: 'ack'; id: number; bytes: number }
  | { t: 'done'; id: number; values?: string[]; error?: string };

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const kit = (${digestKit.toString()})(require);
const states = new Map();
parentPort.on('message', (m) => {
  try {
    if (m.t === 'open') states.set(m.id, m.specs.map((s) => kit.create(s)));
    else if (m.t === 'data') {
      const st = states.get(m.id);
      const b = new Uint8Array(m.buf);
      if (st) for (const s of st) s.update(b);
      parentPort.postMessage({ t: 'ack', id: m.id, bytes: b.byteLength });
    } else if (m.t === 'end') {
      const st = states.get(m.id) || [];
      states.delete(m.id);
      parentPort.postMessage({ t: 'done', id: m.id, values: st.map((s) => s.finish()) });
    } else if (m.t === 'drop') states.delete(m.id);
  } catch (e) {
    states.delete(m.id);
    parentPort.postMessage({ t: 'done', id: m.id, error: String(e && e.message || e) });
  }
});
`;

interface Lane {
  readonly worker: Worker;
  /** Sessions assigned (for spreading them). */
  open: number;
  /** Callers awaiting an answer: the thread is ref'd while there are any. */
  awaiting: number;
}

function await_<T>(lane: Lane, p: Promise<T>): Promise<T> {
  if (lane.awaiting++ === 0) lane.worker.ref();
  return p.finally(() => {
    if (--lane.awaiting === 0) lane.worker.unref();
  });
}

interface SessionHooks {
  ack(bytes: number): void;
  done(values: string[] | undefined, error: string | undefined): void;
}

const lanes: Lane[] = [];
const sessions = new Map<number, SessionHooks>();
let nextId = 1;

function laneCount(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

function startLane(): Lane {
  // No flags of the process: the source is CommonJS (`node --input-type=module -e` would make
  // eval'd code an ES module), and a worker refuses per-process flags (`--expose-gc`) given to it.
  const worker = new Worker(WORKER_SOURCE, { eval: true, name: 'tierkit-digest', execArgv: [] });
  const lane: Lane = { worker, open: 0, awaiting: 0 };
  worker.on('message', (r: Reply) => {
    const s = sessions.get(r.id);
    if (!s) return;
    if (r.t === 'ack') s.ack(r.bytes);
    else s.done(r.values, r.error);
  });
  worker.on('error', (err) => {
    // Every session on this thread fails; the next session starts a new thread.
    const i = lanes.indexOf(lane);
    if (i >= 0) lanes.splice(i, 1);
    for (const [id, s] of sessions)
      if ((s as { lane?: Lane }).lane === lane) {
        sessions.delete(id);
        s.done(undefined, err.message);
      }
  });
  // After the listeners: adding a 'message' listener refs the thread again, and a
  // session left unfinished (a range read's fill) would then keep the process alive.
  worker.unref();
  lanes.push(lane);
  return lane;
}

/**
 * Starts a digest thread now if none runs, so a fresh process's first fill
 * does not wait for its boot (tens of ms of Node start-up); call it when a
 * fill or warm begins, before the origin's first answer. Unref'd: it keeps
 * no process alive. Idempotent and cheap once a thread runs.
 */
export function prestartDigestWorker(): void {
  if (lanes.length === 0) startLane();
}

function pickLane(): Lane {
  if (lanes.length < laneCount()) {
    const idle = lanes.find((l) => l.open === 0);
    return idle ?? startLane();
  }
  return lanes.reduce((a, b) => (b.open < a.open ? b : a));
}

/**
 * One object's digests, fed in order. `update` copies the bytes and returns at
 * once; `backlog` is the bytes sent and not yet digested (for backpressure).
 */
export class DigestSession {
  readonly specs: readonly DigestSpec[];
  readonly #id = nextId++;
  readonly #lane: Lane;
  #backlog = 0;
  #waiters: (() => void)[] = [];
  #result: Promise<string[]> | undefined;
  #resolve!: (v: string[]) => void;
  #reject!: (e: Error) => void;
  #closed = false;

  /** Set for a session digested on the calling thread (`inline`). */
  readonly #local: DigestState[] | undefined;

  /** `inline`: digest on the calling thread (a small object; see INLINE_DIGEST_BYTES). */
  constructor(specs: readonly DigestSpec[], options: { inline?: boolean } = {}) {
    this.specs = specs;
    if (options.inline) {
      this.#local = specs.map((spec) => kitHere().create(spec));
      this.#lane = undefined as unknown as Lane;
      return;
    }
    this.#lane = pickLane();
    this.#lane.open++;
    const hooks: SessionHooks & { lane: Lane } = {
      lane: this.#lane,
      ack: (bytes) => {
        this.#backlog -= bytes;
        const w = this.#waiters;
        this.#waiters = [];
        for (const f of w) f();
      },
      done: (values, error) => {
        this.#release();
        if (values) this.#resolve(values);
        else this.#reject(new Error(`digest worker failed: ${error}`));
      },
    };
    sessions.set(this.#id, hooks);
    this.#result = new Promise<string[]>((res, rej) => {
      this.#resolve = res;
      this.#reject = rej;
    });
    this.#result.catch(() => undefined);
    this.#post({ t: 'open', id: this.#id, specs: [...specs] });
  }

  /** Bytes handed over and not yet digested. */
  get backlog(): number {
    return this.#backlog;
  }

  /** Hands `bytes` over; `owned`: the caller gives up a whole buffer of its own (moved, not copied). */
  update(bytes: Uint8Array, owned = false): void {
    if (this.#closed || bytes.byteLength === 0) return;
    if (this.#local) {
      for (const st of this.#local) st.update(bytes);
      return;
    }
    const movable =
      owned &&
      bytes.buffer instanceof ArrayBuffer &&
      bytes.byteOffset === 0 &&
      bytes.byteLength === bytes.buffer.byteLength;
    const copy = (movable ? bytes : new Uint8Array(bytes)) as Uint8Array<ArrayBuffer>;
    this.#backlog += copy.byteLength;
    this.#lane.worker.postMessage({ t: 'data', id: this.#id, buf: copy.buffer } satisfies Msg, [copy.buffer]);
  }

  /** Resolves once the backlog is at most `bytes`. */
  async drain(bytes: number): Promise<void> {
    while (this.#backlog > bytes && sessions.has(this.#id)) {
      await await_(this.#lane, new Promise<void>((r) => this.#waiters.push(r)));
    }
  }

  /** The digests (hex, in the order of `specs`) of everything fed. */
  finish(): Promise<string[]> {
    if (this.#local) {
      if (!this.#closed) {
        this.#closed = true;
        this.#result = Promise.resolve(this.#local.map((st) => st.finish()));
      }
      return this.#result ?? Promise.reject(new Error('digest session dropped'));
    }
    if (!this.#closed) {
      this.#closed = true;
      this.#post({ t: 'end', id: this.#id });
      this.#result = await_(this.#lane, this.#result!);
      this.#result.catch(() => undefined);
    }
    return this.#result!;
  }

  /** Forgets the session (a fill given up). */
  drop(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#local) return;
    this.#post({ t: 'drop', id: this.#id });
    this.#release();
    this.#reject(new Error('digest session dropped'));
  }

  #post(m: Msg): void {
    this.#lane.worker.postMessage(m);
  }

  #release(): void {
    if (!sessions.delete(this.#id)) return;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
    this.#lane.open--;
  }
}

/** The digest (hex) of `bytes`, computed on a digest thread: for a check the event loop should not pay for. */
export async function digestBytes(bytes: Uint8Array, spec: DigestSpec): Promise<string> {
  const s = new DigestSession([spec], { inline: bytes.byteLength <= INLINE_DIGEST_BYTES });
  // In slices, a few in flight: a whole-object read is not copied whole.
  const slice = 8 * 1024 * 1024;
  for (let i = 0; i < bytes.byteLength; i += slice) {
    s.update(bytes.subarray(i, i + slice));
    await s.drain(4 * slice);
  }
  const [value] = await s.finish();
  return value!;
}
