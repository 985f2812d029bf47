import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeObject, sleep, verifyObject } from '../test-fixtures/content.mjs';
import { type Child, FIXTURES, tempDir, watchChild } from './test-utils.js';

// Each worker is a "node": its own PID namespace (it is pid 1 there, like every other
// worker) and its own UTS namespace (its own hostname), all on one cache directory.
// Nothing but the files is shared, as on an RWX volume; liveness comes from leases.
// The children import ../dist: `npm run build` first (turbo's test task depends on build).

/** Why the namespaces cannot be made here, or undefined when they can. */
function refusal(): string | undefined {
  if (process.platform !== 'linux') return 'PID and UTS namespaces are Linux-only';
  const r = spawnSync(
    'unshare',
    [
      '--pid',
      '--uts',
      '--fork',
      '--kill-child',
      '--',
      process.execPath,
      '-e',
      // What the workers do there: name their host, and (the lock test) pick their next pid.
      'const fs = require("fs"); fs.writeFileSync("/proc/sys/kernel/hostname", "tierkit-probe"); fs.writeFileSync("/proc/sys/kernel/ns_last_pid", "99")',
    ],
    { encoding: 'utf8' },
  );
  if (r.error) return `unshare(1) cannot run: ${r.error.message}`;
  if (r.status !== 0) {
    const why =
      (r.stderr || '')
        .trim()
        .split('\n')
        .find((l) => /Error|unshare:/.test(l)) ?? `exit ${r.status}`;
    return `refused: a process in new PID/UTS namespaces that sets its hostname and next pid (${why})`;
  }
  return undefined;
}

const refused = refusal();
const nsIt = refused ? it.skip : it;
const suffix = refused ? ` — skipped: ${refused}` : '';

/** Runs test-fixtures/node-worker.mjs in new PID and UTS namespaces. */
function startNode(mode: string, cfg: object): Child {
  const proc = spawn(
    'unshare',
    [
      '--pid',
      '--uts',
      '--fork',
      '--kill-child',
      '--',
      process.execPath,
      join(FIXTURES, 'node-worker.mjs'),
      mode,
      JSON.stringify(cfg),
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  // No deadline of its own on a wait: the test's timeout bounds it.
  return watchChild(proc, 'worker', Number.POSITIVE_INFINITY);
}

const json = (line: string) => JSON.parse(line.slice(line.indexOf('{')));

/** SIGKILLs the worker's node process itself (by its pid outside its namespace) and waits for it to be gone. */
async function kill(w: Child, outerPid: number): Promise<void> {
  process.kill(outerPid, 'SIGKILL');
  await w.exited;
}

const BS = 64 * 1024;
const OBJECTS = [
  { key: 'llama/model-00001.safetensors', version: 1, size: 20 * BS + 123 },
  { key: 'llama/model-00002.safetensors', version: 1, size: 13 * BS },
  { key: 'qwen/model.gguf', version: 3, size: 7 * BS + 5 },
];

/** The lock name a block claim uses (partial.ts). */
function claimLock(key: string, block: number): string {
  return `p-${createHash('sha256').update(key).digest('hex').slice(0, 32)}-${block}.lock`;
}

describe('many nodes on one shared cache directory', () => {
  let dir = '';
  let cleanup = async () => {};
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir('nodes'));
  });
  afterAll(() => cleanup());

  nsIt(
    `nodes in their own PID/UTS namespaces, some SIGKILLed mid-fetch: one fill per block, every byte checked, dead holders' leases taken over${suffix}`,
    async () => {
      const cache = join(dir, 'cache');
      const origin = join(dir, 'origin');
      const log = join(dir, 'origin-reads.log');
      await mkdir(origin, { recursive: true });
      for (const o of OBJECTS) {
        await mkdir(join(origin, o.key, '..'), { recursive: true });
        await writeFile(join(origin, o.key), makeObject(o.key, o.version, o.size));
      }
      await writeFile(log, '');
      const base = { cache, origin, log, objects: OBJECTS, blockSize: BS, leaseMs: 1000 };
      const node = (i: number, extra: object = {}) =>
        startNode('reader', {
          ...base,
          node: `node-${i}`,
          hostname: `node-${i}`,
          seed: 7919 * (i + 1) + Math.floor(Math.random() * 1000),
          reads: 20,
          originDelayMs: 30,
          ...extra,
        });

      // Two victims start with two survivors; each victim is killed while a fetch of its
      // own is in flight (its origin is slow), so it dies holding block claims.
      const victims = [0, 1].map((i) => node(i, { originDelayMs: 400 }));
      const early = [2, 3].map((i) => node(i));
      const orphans = new Map<string, string>();
      const victimIdents: ReturnType<typeof json>[] = [];
      for (const v of victims) {
        const ident = json(await v.waitFor(/^ident /));
        victimIdents.push(ident);
        await v.waitFor(/^fetch /);
        await sleep(Math.random() * 20);
        await kill(v, ident.outerPid);
        // The claims it held, left behind with their last beat.
        for (const name of await readdir(join(cache, '.tierkit', 'locks'))) {
          const raw = await readFile(join(cache, '.tierkit', 'locks', name), 'utf8').catch(() => '');
          if (raw && JSON.parse(raw).host === ident.host) orphans.set(name, raw);
        }
      }
      // More nodes arrive after the deaths.
      const late = [4, 5].map((i) => node(i));
      const survivors = [...early, ...late];
      const results = await Promise.all(survivors.map((w) => w.exited));
      const reports = survivors.map((w) => json(w.lines.at(-1) ?? '{}'));
      for (const [i, r] of results.entries()) expect(r.code, `${r.stderr} ${w(i)}`).toBe(0);
      function w(i: number) {
        return survivors[i]!.lines.slice(-3).join('\n');
      }

      // Really separate: every node is pid 1 in a PID namespace of its own, under its own hostname.
      const idents = [...victimIdents, ...reports];
      // (A namespace's id may be reused once it is gone: only nodes alive together are compared.)
      expect(new Set([...victimIdents, ...reports.slice(0, 2)].map((r) => r.pidns)).size).toBe(4);
      expect(idents.map((r) => r.pidns)).not.toContain(readlinkSync('/proc/self/ns/pid'));
      expect(idents.every((r) => r.pid === 1)).toBe(true);
      expect(new Set(idents.map((r) => r.host)).size).toBe(6);

      // Every byte read was right (the workers compared each range and each whole object).
      for (const r of reports) {
        expect(r.bad).toEqual([]);
        expect(r.ranges).toBe(20);
        expect(r.whole).toBe(OBJECTS.length);
      }

      // Origin reads per block: a block is fetched by the survivors at most once, and
      // exactly once unless a victim fetched it (and died doing so, or stored it first).
      const victimNames = new Set(victimIdents.map((v) => v.node));
      const reads = new Map<string, { survivors: number; victims: number }>();
      for (const line of (await readFile(log, 'utf8')).trim().split('\n')) {
        const [who, key, off, len] = line.split(' ');
        const o = OBJECTS.find((x) => x.key === key)!;
        const length = Number(len) < 0 ? o.size - Number(off) : Number(len);
        for (let b = Math.floor(Number(off) / BS); b <= Math.floor((Number(off) + length - 1) / BS); b++) {
          const c = reads.get(`${key}#${b}`) ?? { survivors: 0, victims: 0 };
          if (victimNames.has(who!)) c.victims++;
          else c.survivors++;
          reads.set(`${key}#${b}`, c);
        }
      }
      let refetched = 0;
      for (const o of OBJECTS) {
        for (let b = 0; b < Math.ceil(o.size / BS); b++) {
          const c = reads.get(`${o.key}#${b}`);
          expect(c, `${o.key} block ${b} never fetched`).toBeDefined();
          expect(c!.survivors, `${o.key} block ${b}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(1);
          if (c!.victims === 0) expect(c!.survivors, `${o.key} block ${b}`).toBe(1);
          expect(c!.victims).toBeLessThanOrEqual(victims.length);
          if (c!.victims > 0 && c!.survivors === 1) refetched++;
        }
      }

      // The victims died holding claims; each was taken over once its lease lapsed (nothing
      // else removes a dead node's lock), unless the victim had stored the block first.
      expect(orphans.size).toBeGreaterThan(0);
      let takenOver = 0;
      for (const [name, raw] of orphans) {
        const now = await readFile(join(cache, '.tierkit', 'locks', name), 'utf8').catch(() => undefined);
        if (now === raw) {
          const o = OBJECTS.find((x) => name.startsWith(claimLock(x.key, 0).slice(0, 35)))!;
          const b = Number(/-(\d+)\.lock$/.exec(name)![1]);
          expect(
            reads.get(`${o.key}#${b}`)?.survivors,
            `${name} left in place but its block was fetched again`,
          ).toBe(0);
        } else takenOver++;
      }
      expect(takenOver).toBeGreaterThan(0);
      expect(refetched).toBeGreaterThan(0);

      // The shared cache holds every object whole, as plain files.
      for (const o of OBJECTS) {
        const v = verifyObject(new Uint8Array(await readFile(join(cache, o.key))), o.key);
        expect(v.ok, o.key).toBe(true);
      }
    },
    60_000,
  );

  nsIt(
    `a live holder in another PID namespace under the same hostname is never taken over; once killed, its lease is${suffix}`,
    async () => {
      const cache = join(dir, 'lock-cache');
      const cfg = { cache, key: 'llama/model-00001.safetensors', leaseMs: 400, hostname: 'shared-name' };
      // The holder has a high pid in its namespace; the contender's namespace has no such pid,
      // so a liveness check by hostname and pid would call the live holder dead.
      const holder = startNode('hold', { ...cfg, node: 'holder' });
      const held = json(await holder.waitFor(/^held /));
      expect(held.pid).toBeGreaterThan(1000);
      expect(held.host).toBe('shared-name');
      const contender = startNode('contend', {
        ...cfg,
        node: 'contender',
        tryMs: 5 * cfg.leaseMs,
        holderPid: held.pid,
      });
      const tried = json(await contender.waitFor(/^tried /));
      expect(tried.host).toBe('shared-name');
      expect(tried.pidns).not.toBe(held.pidns);
      expect(tried.holderPidVisible).toBe(false);
      expect(tried.attempts).toBeGreaterThan(10);
      expect(tried.got).toBe(false);
      const lockPath = join(
        cache,
        '.tierkit',
        'locks',
        `k-${createHash('sha256').update(cfg.key).digest('hex')}.lock`,
      );
      expect(JSON.parse(await readFile(lockPath, 'utf8')).token).toBe(held.token);

      await kill(holder, held.outerPid);
      contender.proc.stdin!.write('go\n');
      const acquired = json(await contender.waitFor(/^acquired /));
      expect(acquired.tookOver).toBe(true);
      expect(acquired.token).not.toBe(held.token);
      expect((await contender.exited).code).toBe(0);
    },
    30_000,
  );
});
