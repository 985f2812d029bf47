// One "node" of a cluster sharing a cache directory, run by multinode.test.ts
// inside its own PID and UTS namespaces (`unshare --pid --uts --fork`).
//   node node-worker.mjs <mode> <json config>
// Modes:
//   fill: reads config.key whole through [fs cache, fs origin] (for strace).
//   reader: reads random ranges, then every object whole, through [fs cache, slow
//     fs origin]; checks every byte; logs each origin read to config.log before
//     making it (so a read cut short by SIGKILL still counts).
//   hold: a child process (pid 30000 here, a pid no other namespace has) takes
//     config.key's lock, prints 'held', and keeps it (beating) until killed.
//   contend: tries config.key's lock for config.tryMs (must not get it while the
//     holder lives), prints the result, waits for 'go' on stdin, then acquires it.
import { spawn } from 'node:child_process';
import { appendFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { makeObject, sleep, verifyObject } from './content.mjs';

const [mode, json] = process.argv.slice(2);
const cfg = JSON.parse(json);

// Our own hostname, set before tier-fs reads it at import (only our UTS namespace sees it).
if (cfg.hostname && hostname() !== cfg.hostname) writeFileSync('/proc/sys/kernel/hostname', cfg.hostname);
const { createStack, DelegatingTier } = await import('@tierkit/tier-core');
const { FsTier } = await import('../dist/index.js');

const say = (line) => process.stdout.write(`${line}\n`);
const ident = () => ({
  node: cfg.node,
  pid: process.pid,
  // /proc is the parent namespace's mount: /proc/self names our pid there.
  outerPid: Number(readlinkSync('/proc/self')),
  host: hostname(),
  pidns: readlinkSync('/proc/self/ns/pid'),
});

if (mode === 'reader') {
  say(`ident ${JSON.stringify(ident())}`);
  /** The origin, slowed down so a kill lands mid-fetch; every read is logged first. */
  class SlowOrigin extends DelegatingTier {
    async readInto(key, target, options) {
      const offset = options?.offset ?? 0;
      const length = options?.length ?? target.byteLength;
      appendFileSync(cfg.log, `${cfg.node} ${key} ${offset} ${length}\n`);
      say(`fetch ${key} ${offset} ${length}`);
      await sleep(cfg.originDelayMs);
      return super.readInto(key, target, options);
    }
    async read(key, options) {
      appendFileSync(
        cfg.log,
        `${cfg.node} ${key} ${options?.range?.offset ?? 0} ${options?.range?.length ?? -1}\n`,
      );
      return super.read(key, options);
    }
    async readStream(key, options) {
      appendFileSync(
        cfg.log,
        `${cfg.node} ${key} ${options?.range?.offset ?? 0} ${options?.range?.length ?? -1}\n`,
      );
      return super.readStream(key, options);
    }
  }
  const cache = new FsTier({ root: cfg.cache, name: 'cache', lockLeaseMs: cfg.leaseMs, lockPollMs: 5 });
  const origin = new SlowOrigin(new FsTier({ root: cfg.origin, name: 'origin' }));
  const stack = createStack([cache, origin], {
    blockSize: cfg.blockSize,
    fillConcurrency: 2,
    fillPollMs: 10,
  });
  const bad = [];
  let rand = cfg.seed >>> 0 || 1;
  const next = (n) => {
    rand ^= rand << 13;
    rand >>>= 0;
    rand ^= rand >>> 17;
    rand ^= rand << 5;
    rand >>>= 0;
    return rand % n;
  };
  const want = new Map(cfg.objects.map((o) => [o.key, makeObject(o.key, o.version, o.size)]));
  let ranges = 0;
  for (let i = 0; i < cfg.reads; i++) {
    const o = cfg.objects[next(cfg.objects.length)];
    const offset = next(o.size);
    const length = Math.min(o.size - offset, 1 + next(3 * cfg.blockSize));
    const got = await stack.read(o.key, { range: { offset, length } });
    const expected = want.get(o.key).subarray(offset, offset + length);
    if (!got || Buffer.compare(Buffer.from(got), Buffer.from(expected)) !== 0) {
      bad.push(`${o.key} @${offset}+${length}`);
    }
    ranges++;
  }
  let whole = 0;
  for (const o of cfg.objects) {
    const got = await stack.read(o.key);
    const v = got ? verifyObject(got, o.key) : { ok: false, reason: 'missing' };
    if (!v.ok) bad.push(`${o.key} whole: ${v.reason}`);
    whole++;
  }
  await stack.close();
  say(JSON.stringify({ ...ident(), ranges, whole, bad }));
  process.exit(bad.length === 0 ? 0 : 1);
}

if (mode === 'fill') {
  // One object read cold, its blocks written through the page cache (run under strace).
  const cache = new FsTier({ root: cfg.cache, name: 'cache', pool: cfg.pool, directFill: false });
  const origin = new FsTier({ root: cfg.origin, name: 'origin' });
  const stack = createStack([cache, origin], { blockSize: cfg.blockSize });
  const got = await stack.read(cfg.key);
  const want = await origin.read(cfg.key);
  await stack.close();
  if (!got || Buffer.compare(Buffer.from(got), Buffer.from(want)) !== 0) throw new Error('wrong bytes');
  process.exit(0);
}

if (mode === 'hold') {
  // Pid 1 of this namespace starts the holder with a pid far above any the contender's
  // namespace uses (its own threads take pids there too).
  writeFileSync('/proc/sys/kernel/ns_last_pid', '29999');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'hold-child', json], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  child.on('exit', (code) => process.exit(code ?? 1));
}

if (mode === 'hold-child') {
  const tier = new FsTier({ root: cfg.cache, name: 'cache', lockLeaseMs: cfg.leaseMs, lockPollMs: 5 });
  await tier.ready;
  const lock = await tier.acquireLock(cfg.key);
  say(`held ${JSON.stringify({ ...ident(), token: lock.token })}`);
  await sleep(120_000);
  process.exit(0);
}

if (mode === 'contend') {
  const tier = new FsTier({ root: cfg.cache, name: 'cache', lockLeaseMs: cfg.leaseMs, lockPollMs: 5 });
  await tier.ready;
  let attempts = 0;
  let got;
  const until = Date.now() + cfg.tryMs;
  while (!got && Date.now() < until) {
    attempts++;
    got = await tier.tryLock(cfg.key);
    if (!got) await sleep(10);
  }
  let holderPidVisible = true;
  try {
    process.kill(cfg.holderPid, 0);
  } catch (err) {
    holderPidVisible = err.code === 'EPERM';
  }
  say(`tried ${JSON.stringify({ ...ident(), attempts, got: got !== undefined, holderPidVisible })}`);
  if (got) process.exit(1);
  // Wait for the parent to kill the holder.
  await new Promise((resolve) => {
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d) => d.includes('go') && resolve());
  });
  const lock = await tier.acquireLock(cfg.key, { timeoutMs: 20 * cfg.leaseMs });
  say(`acquired ${JSON.stringify({ ...ident(), tookOver: lock.tookOver, token: lock.token })}`);
  await lock.release();
  await tier.close();
  process.exit(0);
}
