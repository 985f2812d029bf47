/**
 * Who this process is, for files other processes judge: locks and leftovers.
 *
 * A pid means something only to processes in the same PID namespace of the
 * same running kernel. A hostname does not say that: containers on one node
 * share it with `--uts=host`, pods on different nodes can carry the same one,
 * and two PID namespaces on one kernel number their processes from 1 each.
 * So "is the holder dead?" is asked of the kernel only when the holder's
 * `scope` — the kernel's boot id and the PID namespace's inode — equals ours;
 * every other holder is judged by its lease alone.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { HOST, HOST_SAFE, isPidAlive } from './paths.js';

export interface Owner {
  readonly pid: number;
  readonly host: string;
  /** Boot id and PID namespace; undefined where the platform does not expose them (then leases only). */
  readonly scope: string | undefined;
}

function readScope(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const pidns = readlinkSync('/proc/self/ns/pid');
    return boot && pidns ? `${boot}/${pidns}` : undefined;
  } catch {
    return undefined;
  }
}

/** This process. */
export const SELF: Owner = { pid: process.pid, host: HOST, scope: readScope() };

/**
 * This process's scope as it appears in file names (`…@<tag>`): the host for
 * people reading a listing, and a digest of the scope. Names never carry the
 * bare hostname, so a cleaner that compares a name's host with its own (and
 * then asks whether the pid is alive) never matches another namespace's file.
 */
export const OWNER_TAG = `${HOST_SAFE}~${createHash('sha256')
  .update(SELF.scope ?? `no-scope:${HOST}:${process.pid}`)
  .digest('hex')
  .slice(0, 12)}`;

/**
 * True only when `owner` is provably dead: it shares our kernel and PID
 * namespace, is not us, and its pid is gone. False means "ask its lease".
 */
export function provablyDead(owner: Partial<Owner> | undefined, self: Owner = SELF): boolean {
  if (self.scope === undefined || owner?.scope !== self.scope) return false;
  if (typeof owner.pid !== 'number' || owner.pid === self.pid) return false;
  return !isPidAlive(owner.pid);
}

/** Whether a file name's `@<tag>` is ours, so its pid can be asked of the kernel. */
export function isOurTag(tag: string): boolean {
  return SELF.scope !== undefined && tag === OWNER_TAG;
}
