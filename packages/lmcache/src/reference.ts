/**
 * Runs the Python reference reader/writer (test-fixtures/lmcache_ref.py) for tests.
 * `python3` is on CI and the dev machines; where it is not, tests that need it skip
 * with `pythonMissing` as their reason and the checked-in golden files still run.
 */
import { spawnSync } from 'node:child_process';
import { referenceScript } from './fixtures.js';

function findPython(): string | undefined {
  for (const p of [process.env.PYTHON, 'python3']) {
    if (p && spawnSync(p, ['-c', 'import sys; assert sys.version_info >= (3, 10)']).status === 0) return p;
  }
  return undefined;
}

const python = findPython();

/** Why the reference cannot run here, or undefined when it can. */
export const pythonMissing: string | undefined = python ? undefined : 'python3 (>= 3.10) is not installed';

/** Runs a reference command and parses its JSON output; throws with its stderr on failure. */
export function runReference(args: readonly string[]): unknown {
  if (!python) throw new Error(pythonMissing);
  const r = spawnSync(python, [referenceScript(), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`lmcache_ref.py ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  const out = r.stdout.trim();
  return out === '' ? undefined : JSON.parse(out);
}
