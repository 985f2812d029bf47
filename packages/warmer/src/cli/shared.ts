/** What every `tierkit` command shares: its context, exit codes, and opening the cache and origin. */
import type { Tier } from '@tierkit/tier-core';
import type { FsTier } from '@tierkit/tier-fs';
import {
  cacheFromConfig,
  coerce,
  mergeConfig,
  originFromConfig,
  type TierkitConfig,
  usage,
} from '../config.js';
import { unvalidatedMessage } from '../offline.js';
import type { ItemError } from '../util.js';

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export type Opt = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };
export type Flags = Record<string, string | boolean | string[] | undefined>;

export interface Ctx {
  flags: Flags;
  positionals: string[];
  config: TierkitConfig;
  env: NodeJS.ProcessEnv;
  json: boolean;
  out: (line: string) => void;
  err: (line: string) => void;
  signal: AbortSignal;
}

/** How a command runs (its help is in help.ts). */
export interface CommandSpec {
  options: Record<string, Opt>;
  /** The command takes no positional arguments. */
  noArguments?: boolean;
  run(ctx: Ctx): Promise<number>;
}

/** The stack options every command takes. */
export const GLOBAL: Record<string, Opt> = {
  cache: { type: 'string' },
  origin: { type: 'string' },
  config: { type: 'string', short: 'c' },
  validate: { type: 'string' },
  'stale-if-error': { type: 'boolean' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  progress: { type: 'string' },
  'disable-cache': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** The settings the stack flags give (flags win over variables and the config file). */
export function configFromFlags(flags: Flags): TierkitConfig {
  return {
    cache: flags.cache as string | undefined,
    origin: flags.origin as string | undefined,
    validate:
      flags.validate === undefined
        ? undefined
        : (coerce('validate', flags.validate, '--validate') as TierkitConfig['validate']),
    staleIfError: flags['stale-if-error'] === true ? true : undefined,
    disableCache: flags['disable-cache'] === true ? true : undefined,
  };
}

/** A flag's value, checked as the config field it sets; undefined when not given. */
export function flag<T>(ctx: Ctx, name: string, field: keyof TierkitConfig): T | undefined {
  const v = ctx.flags[name];
  return v === undefined ? undefined : (coerce(field, v, `--${name}`) as T);
}

export function withFlags(ctx: Ctx, extra: TierkitConfig): TierkitConfig {
  return mergeConfig(ctx.config, extra);
}

export async function openCache(ctx: Ctx): Promise<FsTier> {
  const cache = cacheFromConfig(ctx.config);
  await cache.ready;
  return cache;
}

export async function maybeOrigin(ctx: Ctx): Promise<Tier | undefined> {
  return ctx.config.origin || ctx.config.tiers ? originFromConfig(ctx.config, ctx.env) : undefined;
}

export function disabled(ctx: Ctx, what: string): number {
  const msg = `cache disabled (TIERKIT_DISABLE_CACHE / --disable-cache): nothing to ${what}; readers use the origin directly`;
  if (ctx.json) ctx.out(JSON.stringify({ command: what, disabled: true }));
  else ctx.err(msg);
  return EXIT_OK;
}

/** The one line that says a run served (or kept) copies it could not validate. */
export function sayUnvalidated(ctx: Ctx, origin: string, error: ItemError): void {
  if (!ctx.json) ctx.err(`warning: ${unvalidatedMessage(origin, error)}`);
}

export function progressMode(ctx: Ctx): 'bar' | 'plain' | 'none' {
  const p = ctx.flags.progress as string | undefined;
  if (p !== undefined) {
    if (p !== 'bar' && p !== 'plain' && p !== 'none')
      throw usage(`--progress must be bar, plain or none, got '${p}'`, '--progress');
    return p;
  }
  if (ctx.json || ctx.flags.quiet) return 'none';
  return process.stderr.isTTY ? 'bar' : 'plain';
}

/** Keeps the process alive until `signal` aborts (Ctrl-C): unref'd timers and servers alone do not. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const keep = setInterval(() => {}, 1 << 30);
    signal.addEventListener(
      'abort',
      () => {
        clearInterval(keep);
        resolve();
      },
      { once: true },
    );
  });
}
