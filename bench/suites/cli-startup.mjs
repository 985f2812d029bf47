// `tierkit` start-up: the wall time of a fresh process for `--help`, `--version`
// and a command's help (none of which loads the tiers or the AWS SDK), against
// a bare `node -e 0` on the same machine, and `tierkit ls` on an empty cache
// (a command: the runner and tier-fs load, S3 does not). Median of 10 runs after
// one untimed run. Goal: `tierkit --help` ≤ 150 ms.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmt, summarize, timeRuns } from '../stats.mjs';

export const name = 'cli-startup';
export const title = 'tierkit CLI start-up (fresh process)';

const here = dirname(fileURLToPath(import.meta.url));
const warmer = join(here, '..', '..', 'packages', 'warmer');
const bin = join(warmer, 'bin', 'tierkit.cjs');
const GOAL_MS = 150;

function once(args) {
  const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
}

export default async function cliStartup({ quick, log }) {
  if (!existsSync(join(warmer, 'dist', 'cli.js'))) {
    const why = 'packages/warmer is not built (npx turbo run build --filter=@tierkit/warmer...)';
    log(`skipped: ${why}`);
    return { markdown: `Skipped: ${why}.`, data: { skipped: why } };
  }
  const runs = quick ? 5 : 10;
  const cache = await mkdtemp(join(tmpdir(), 'tierkit-bench-startup-'));
  const cases = [
    ['node -e 0 (no tierkit: the floor)', ['-e', '0']],
    ['tierkit --help', [bin, '--help']],
    ['tierkit --version', [bin, '--version']],
    ['tierkit warm --help', [bin, 'warm', '--help']],
    ['tierkit ls (empty cache)', [bin, 'ls', '--cache', cache]],
  ];
  const rows = [];
  try {
    for (const [label, args] of cases) {
      const s = summarize(await timeRuns(() => once(args), { runs, warmup: 1 }));
      rows.push({ label, ...s });
      log(
        `${label}: median ${fmt(s.median * 1000, 0)} ms (min ${fmt(s.min * 1000, 0)}, max ${fmt(s.max * 1000, 0)})`,
      );
    }
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
  const help = rows.find((r) => r.label === 'tierkit --help');
  const table = [
    '| command | median ms | min ms | max ms |',
    '| --- | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.label} | ${fmt(r.median * 1000, 0)} | ${fmt(r.min * 1000, 0)} | ${fmt(r.max * 1000, 0)} |`,
    ),
  ].join('\n');
  const verdict = `\`tierkit --help\`: median ${fmt(help.median * 1000, 0)} ms over ${runs} runs (goal ≤ ${GOAL_MS} ms; ${
    help.median * 1000 <= GOAL_MS ? 'met' : 'not met'
  } on this machine).`;
  return { markdown: `${table}\n\n${verdict}`, data: { runs, goalMs: GOAL_MS, rows } };
}
