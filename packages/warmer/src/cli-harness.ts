/** Running the built `tierkit` CLI as a user would, for the CLI tests. */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PKG = join(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(PKG, 'dist', 'cli.js');
export const MiB = 1024 * 1024;

/** Builds the CLI when dist is missing or older than the sources (npm test -w runs without turbo). */
export async function ensureBuilt(): Promise<void> {
  const newest = async (dir: string): Promise<number> => {
    let t = 0;
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? await newest(p) : (await stat(p)).mtimeMs);
    }
    return t;
  };
  const built = await stat(CLI).then(
    (s) => s.mtimeMs,
    () => 0,
  );
  if (built >= (await newest(join(PKG, 'src')))) return;
  const r = spawnSync('npm', ['run', 'build'], { cwd: PKG, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`build failed: ${r.stdout}${r.stderr}`);
}

export function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export interface Run {
  code: number | null;
  stdout: string;
  /** stdout as bytes (what `tierkit cat` writes). */
  stdoutBytes: Buffer;
  stderr: string;
}

export function tierkit(
  args: string[],
  env: Record<string, string> = {},
  opts: { uid?: number } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        AWS_REGION: 'us-east-1',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
    });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      out.push(d);
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr });
    });
  });
}

/** Objects under the cache root (not tierkit's bookkeeping). */
export async function cachedFiles(root: string, rel = ''): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(join(root, rel), { withFileTypes: true }).catch(() => [])) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    if (r === '.tierkit') continue;
    if (d.isDirectory()) out.push(...(await cachedFiles(root, r)));
    else out.push(r);
  }
  return out.sort();
}
