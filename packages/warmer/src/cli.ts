/**
 * `tierkit`: warm, ls, stat, verify, purge, rm, pin, unpin, bake, cat, metrics.
 * Exit codes: 0 success, 1 failure (of some or all objects, or of the
 * environment: origin unreachable, cache not writable), 2 usage error.
 * This file holds only what --help and --version need; cli/run.ts runs commands.
 */
import { realpathSync } from 'node:fs';
import { commandHelp, HELP, mainHelp } from './cli/help.js';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

/** The command runner, built next to this file (tsup entry `cli-run`); from the sources, cli/run.ts. */
const RUNNER = import.meta.url.endsWith('.ts') ? './cli/run.js' : './cli-run.js';

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const out = (l: string) => process.stdout.write(`${l}\n`);
  const err = (l: string) => process.stderr.write(`${l}\n`);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic && HELP[topic]) out(commandHelp(topic));
    else (name === undefined ? err : out)(mainHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version') {
    out('0.1.0');
    return EXIT_OK;
  }
  if (!HELP[name]) {
    err(`tierkit: unknown command '${name}' — commands: ${Object.keys(HELP).join(', ')} (tierkit --help)`);
    return EXIT_USAGE;
  }
  // `tierkit warm --help` needs no more than `tierkit --help` (flags after `--` are arguments).
  const flagsPart = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (flagsPart.includes('--help') || flagsPart.includes('-h')) {
    out(commandHelp(name));
    return EXIT_OK;
  }
  // The commands (tiers, SDKs, metrics) load only now: a separate file in dist/.
  const { runCommand } = (await import(RUNNER)) as typeof import('./cli/run.js');
  return runCommand(name, rest, env, out, err);
}

/** Runs the CLI on this process's arguments and exits with its status (what the `tierkit` bin does). */
export function run(): void {
  // The AWS SDK warns about future Node versions on every run: noise in an operator's terminal.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // Idle keep-alive sockets of an S3 client must not hold the CLI open.
      setTimeout(() => process.exit(code), 500).unref();
    },
    (e) => {
      process.stderr.write(`tierkit: ${(e as Error)?.stack ?? e}\n`);
      process.exitCode = EXIT_FAILED;
    },
  );
}

/** True when this file is the script being run (`node dist/cli.js`, or a bin link made to it by an older install). */
function executedItself(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  let real = script;
  try {
    real = realpathSync(script);
  } catch {}
  return /(?:^|[\\/])cli\.(?:js|ts|mjs)$/.test(real);
}

// bin/tierkit.mjs imports this file and calls run() itself.
if (executedItself()) run();
