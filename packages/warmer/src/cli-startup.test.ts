/**
 * What `tierkit` loads to start: help (main or a command's) and --version load
 * the small CLI file only, never the command runner with the tiers and the AWS
 * SDK. Seen in Node's own module trace (NODE_DEBUG=esm); its time is measured by
 * bench/suites/cli-startup.mjs, not asserted here.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { CLI } from './cli-harness.js';

/** The files Node's ESM loader reported loading for `tierkit args`. */
function loaded(args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, NODE_DEBUG: 'esm' },
  });
  return r.stderr;
}

describe('start-up', () => {
  it.each([['--help'], ['--version'], ['warm', '--help'], ['purge', '-h', '--older-than', '1d']])(
    '`tierkit %s` loads no command runner',
    (...args) => {
      const trace = loaded(args);
      // The trace works: it names the CLI file itself.
      expect(trace).toMatch(/dist\/cli\.js/);
      expect(trace).not.toMatch(/cli-run\.js|@aws-sdk|tier-s3/);
    },
  );

  it('a command that runs loads the runner (the check above can see it)', () => {
    // An unknown flag: the runner loads to parse the flags, then refuses it (nothing is opened).
    expect(loaded(['ls', '--no-such-flag'])).toMatch(/cli-run\.js/);
  });
});
