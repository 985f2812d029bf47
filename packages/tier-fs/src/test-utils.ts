import { type ChildProcess, spawn } from 'node:child_process';
import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-fixtures');

/** A fresh directory under the OS temp dir, removed by the returned function. */
export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `tierkit-fs-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface Child {
  readonly proc: ChildProcess;
  readonly lines: string[];
  /** Resolves with the first stdout line matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** Runs `test-fixtures/<script>` in a child node process; its stdout is collected line by line. */
export function runFixture(script: string, args: string[]): Child {
  const proc = spawn(process.execPath, [join(FIXTURES, script), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return watchChild(proc, `child ${script}`);
}

/**
 * Collects a child's stdout line by line and its stderr; `waitFor` resolves with
 * the first line matching, failing after `defaultTimeoutMs` (Infinity: never)
 * or when the child exits first. `label` names it in those errors.
 */
export function watchChild(proc: ChildProcess, label: string, defaultTimeoutMs = 20_000): Child {
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  let stderr = '';
  proc.stdout!.setEncoding('utf8');
  proc.stdout!.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => {
    stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>(
    (resolve) => {
      proc.on('exit', (code, signal) => resolve({ code, signal, stderr }));
    },
  );
  return {
    proc,
    lines,
    exited,
    waitFor(re, timeoutMs = defaultTimeoutMs) {
      const hit = lines.find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = Number.isFinite(timeoutMs)
          ? setTimeout(
              () =>
                reject(
                  new Error(`${label} printed no line matching ${re} in ${timeoutMs} ms; stderr: ${stderr}`),
                ),
              timeoutMs,
            )
          : undefined;
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`${label} exited before printing ${re}; stderr: ${stderr}`));
        });
      });
    },
  };
}

/** Every regular file under `dir` (relative '/'-paths), skipping `.tierkit` at the top. */
export async function filesUnder(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(join(dir, rel), { withFileTypes: true })) {
    const r = rel === '' ? d.name : `${rel}/${d.name}`;
    if (r === '.tierkit') continue;
    if (d.isDirectory()) out.push(...(await filesUnder(dir, r)));
    else out.push(r);
  }
  return out;
}

/**
 * What `du` reports for `dir`, in bytes: the blocks allocated to every file and
 * folder under it (`.tierkit` included), each inode counted once (a hard link
 * is not counted twice). Entries that vanish mid-walk are skipped.
 */
export async function diskUsage(dir: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (path: string): Promise<void> => {
    const st = await lstat(path, { bigint: true }).catch(() => undefined);
    if (!st) return;
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      total += Number(st.blocks) * 512;
    }
    if (!st.isDirectory()) return;
    for (const name of await readdir(path).catch(() => [] as string[])) await walk(join(path, name));
  };
  await walk(dir);
  return total;
}
