/**
 * `tierkit`: warm, ls, stat, verify, purge, pin, unpin, bake, cat, metrics.
 * Exit codes: 0 success, 1 failure (of some or all objects, or of the
 * environment: origin unreachable, cache not writable), 2 usage error.
 */
import { setMaxListeners } from 'node:events';
import { parseArgs } from 'node:util';
import { isTierError, type TierError } from '@tierkit/tier-core';
import { COMMANDS, commandHelp, mainHelp } from './cli/commands.js';
import { configFromFlags, EXIT_FAILED, EXIT_OK, EXIT_USAGE, type Flags, GLOBAL } from './cli/shared.js';
import {
  configFromEnv,
  describeOrigin,
  loadConfigFile,
  mergeConfig,
  type TierkitConfig,
  usage,
} from './config.js';

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

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const out = (l: string) => process.stdout.write(`${l}\n`);
  const err = (l: string) => process.stderr.write(`${l}\n`);
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    if (topic && COMMANDS[topic]) out(commandHelp(topic, COMMANDS[topic]));
    else (name === undefined ? err : out)(mainHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version') {
    out('0.1.0');
    return EXIT_OK;
  }
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
    try {
      parsed = parseArgs({
        args: rest,
        options: { ...GLOBAL, ...command.options },
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
      out(commandHelp(name, command));
      return EXIT_OK;
    }
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
      out,
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

// Run when executed as the bin (not when imported by tests).
const self = process.argv[1] ?? '';
if (/(?:^|[\\/])(?:cli\.(?:js|ts|mjs)|tierkit)$/.test(self)) {
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
