/**
 * Running one `tierkit` command: flags, settings (flags, then TIERKIT_* variables,
 * then the config file), the command, and errors as exit codes. Loaded only when a
 * command runs, so `tierkit --help` does not load the tiers and their SDKs.
 */
import { setMaxListeners } from 'node:events';
import { parseArgs } from 'node:util';
import { isTierError, type TierError } from '@tierkit/tier-core';
import {
  configFromEnv,
  describeOrigin,
  loadConfigFile,
  mergeConfig,
  type TierkitConfig,
  usage,
} from '../config.js';
import { COMMANDS } from './commands.js';
import { commandHelp } from './help.js';
import { joinNegativeValues, refuseNegatives } from './numeric-flags.js';
import { configFromFlags, EXIT_FAILED, EXIT_OK, EXIT_USAGE, type Flags, GLOBAL } from './shared.js';

/** Hints for errors a user can act on; `origin` is the kind of origin configured. */
function hint(err: TierError, origin: { scheme: string; name: string } | undefined): string | undefined {
  const m = err.message;
  if (err.code === 'UNAVAILABLE' && /permission denied|read-only/.test(m)) return undefined; // tier-fs says what to do
  if (err.tier === (origin?.name ?? 'origin')) {
    if (origin?.scheme === 'file') {
      return 'check --origin: the directory must exist and be readable by this process (is the share mounted?)';
    }
    if (origin?.scheme === 's3') {
      return 'check --origin (bucket, prefix, endpoint: ?endpoint=… or AWS_ENDPOINT_URL), the network, and the AWS_* credentials';
    }
    return 'check the origin (--origin, or the last entry of tiers:)';
  }
  if (err.code === 'CAPACITY') return 'raise the cache maxBytes, purge (tierkit purge) or unpin entries';
  return undefined;
}

/** Runs command `name` (one of COMMANDS) with its arguments; resolves to the exit status. */
export async function runCommand(
  name: string,
  rest: string[],
  env: NodeJS.ProcessEnv,
  out: (line: string) => void,
  err: (line: string) => void,
): Promise<number> {
  const command = COMMANDS[name];
  if (!command) {
    err(
      `tierkit: unknown command '${name}' — commands: ${Object.keys(COMMANDS).join(', ')} (tierkit --help)`,
    );
    return EXIT_USAGE;
  }
  const ac = new AbortController();
  // One signal for the whole run: every operation listens to it.
  setMaxListeners(0, ac.signal);
  const onSignal = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let json = false;
  let config: TierkitConfig = {};
  try {
    let parsed: ReturnType<typeof parseArgs>;
    const options = { ...GLOBAL, ...command.options };
    try {
      parsed = parseArgs({
        args: joinNegativeValues(rest, options),
        options,
        allowPositionals: true,
        strict: true,
      });
    } catch (e) {
      throw usage(
        `${(e as Error).message.replace(/\. To specify a positional.*$/s, '')} — see 'tierkit ${name} --help'`,
      );
    }
    const flags = parsed.values as Flags;
    json = flags.json === true;
    if (flags.help) {
      out(commandHelp(name));
      return EXIT_OK;
    }
    refuseNegatives(flags);
    const configFile = (flags.config as string | undefined) ?? env.TIERKIT_CONFIG;
    config = mergeConfig(
      configFile ? await loadConfigFile(configFile) : undefined,
      configFromEnv(env),
      configFromFlags(flags),
    );
    // A stray word is a mistake for commands without arguments (`--older-than 2 weeks`).
    if (command.noArguments && parsed.positionals.length > 0) {
      throw usage(`unexpected argument '${parsed.positionals[0]}' — see 'tierkit ${name} --help'`);
    }
    return await command.run({
      flags,
      positionals: parsed.positionals,
      config,
      env,
      json,
      // --quiet: no progress and no report on stdout (--json still prints its document); errors stay on stderr.
      out: flags.quiet && !json ? () => {} : out,
      err,
      signal: ac.signal,
    });
  } catch (e) {
    const isUsage = isTierError(e) && (e.code === 'INVALID_ARGUMENT' || e.code === 'INVALID_KEY');
    const message = e instanceof Error ? e.message : String(e);
    if (json)
      out(JSON.stringify({ command: name, error: { code: isTierError(e) ? e.code : 'UNKNOWN', message } }));
    err(`tierkit ${name}: ${isUsage ? 'usage error' : 'error'}: ${message}`);
    const h = isTierError(e) ? hint(e, describeOrigin(config)) : undefined;
    if (h) err(`  hint: ${h}`);
    if (!isTierError(e) && e instanceof Error && env.TIERKIT_DEBUG) err(e.stack ?? '');
    return isUsage ? EXIT_USAGE : EXIT_FAILED;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
