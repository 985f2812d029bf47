/**
 * Real small filesystems for tests (as root): a loop-mounted ext4 image, or a
 * `size=` tmpfs where the kernel refuses loop devices. Each says why it could
 * not be made, so a test can skip with the reason.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface SmallFs {
  /** The mount point. */
  readonly dir: string;
  /** 'ext4 (loop)' or 'tmpfs'. */
  readonly kind: string;
  unmount(): void;
}

function run(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status === 0) return undefined;
  return `${cmd} ${args.join(' ')}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`;
}

/** A filesystem of `mib` MiB mounted under `base`; a string says why none could be made. */
export function smallFs(base: string, mib: number): SmallFs | string {
  if (process.getuid?.() !== 0) return 'mounting a small filesystem needs root';
  const dir = join(base, `fs-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dir, { recursive: true });
  const image = `${dir}.img`;
  const loopRefused =
    run('truncate', ['-s', `${mib}M`, image]) ??
    run('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', image]) ??
    run('mount', ['-o', 'loop', image, dir]);
  if (loopRefused === undefined) {
    return {
      dir,
      kind: 'ext4 (loop)',
      unmount: () => {
        run('umount', [dir]);
        rmSync(image, { force: true });
      },
    };
  }
  rmSync(image, { force: true });
  const tmpfsRefused = run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tierkit-test', dir]);
  if (tmpfsRefused === undefined) {
    console.warn(`loop device refused (${loopRefused}); using a size=${mib}m tmpfs instead`);
    return { dir, kind: 'tmpfs', unmount: () => void run('umount', [dir]) };
  }
  return `no small filesystem: ${loopRefused}; ${tmpfsRefused}`;
}

/** Writes zeros to `path` until the filesystem is full; returns the bytes written. */
export function fillDisk(path: string): number {
  // dd stops with ENOSPC (status 1), which is what we ask for; big blocks first, then
  // small ones appended, so not even the tail of the last block is left free.
  for (const [bs, extra] of [
    ['64k', []],
    ['1k', ['oflag=append', 'conv=notrunc']],
  ] as const) {
    spawnSync('dd', ['if=/dev/zero', `of=${path}`, `bs=${bs}`, 'status=none', ...extra], {
      encoding: 'utf8',
    });
  }
  const r = spawnSync('stat', ['-c', '%s', path], { encoding: 'utf8' });
  return Number(r.stdout.trim());
}
