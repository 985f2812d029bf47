/**
 * Flags that take numbers, and negative values given to them. `util.parseArgs`
 * reads `--concurrency -1` as a flag missing its value followed by an unknown
 * option and answers with its own "argument is ambiguous" text; here such a
 * value is joined to its flag first, and every numeric flag refuses a negative
 * value with one message that says what it takes.
 */
import { usage } from '../config.js';
import type { Flags, Opt } from './shared.js';

/** What each numeric flag takes, as the usage error says it. */
export const NUMERIC_FLAGS: Record<string, string> = {
  concurrency: 'a positive integer',
  depth: 'a positive integer',
  'world-size': 'a positive integer',
  rank: 'an integer ≥ 0',
  'metrics-port': 'a port number (0-65535)',
  'max-bytes': 'a size such as 10GiB',
  'max-bytes-in-flight': 'a size such as 256MiB',
  'block-size': 'a size such as 8MiB',
  'older-than': 'a duration such as 12h or 7d',
  'purge-unused-after': 'a duration such as 12h or 7d',
  every: 'a duration such as 12h or 7d',
  'check-unused-every': 'a duration such as 12h or 7d',
};

const NEGATIVE = /^-(?:\d|\.\d)/;

/**
 * `--flag -1` → `--flag=-1` (a short `-c -1` → `--config=-1`) for flags that take
 * a value, so parseArgs reads a negative number as the value it is.
 */
export function joinNegativeValues(args: readonly string[], options: Record<string, Opt>): string[] {
  const byShort = new Map(
    Object.entries(options)
      .filter(([, o]) => o.short)
      .map(([name, o]) => [o.short!, name]),
  );
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const name = a.startsWith('--') ? a.slice(2) : /^-[^-]$/.test(a) ? byShort.get(a[1]!) : undefined;
    const next = args[i + 1];
    if (name !== undefined && options[name]?.type === 'string' && next !== undefined && NEGATIVE.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

/** Refuses a negative value for any numeric flag, saying what the flag takes. */
export function refuseNegatives(flags: Flags): void {
  for (const [name, takes] of Object.entries(NUMERIC_FLAGS)) {
    const v = flags[name];
    for (const one of Array.isArray(v) ? v : [v]) {
      if (typeof one === 'string' && NEGATIVE.test(one.trim())) {
        throw usage(`--${name} must be ${takes}, got ${one.trim()}`, `--${name}`);
      }
    }
  }
}
