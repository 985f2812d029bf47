import { TierError } from '@tierkit/tier-core';

/** Milliseconds per unit, largest first: the order compound durations must follow. */
const UNITS: ReadonlyArray<readonly [unit: string, ms: number]> = [
  ['w', 604_800_000],
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
];
const UNIT_MS: Readonly<Record<string, number>> = Object.fromEntries(UNITS);
const UNIT_RANK: Readonly<Record<string, number>> = Object.fromEntries(UNITS.map(([u], i) => [u, i]));

const ACCEPTED =
  'a non-negative number of milliseconds, or a duration made of <number><unit> parts with units ' +
  'w (weeks), d (days), h (hours), m (minutes), s (seconds), ms (milliseconds), largest unit first, ' +
  'e.g. 500ms, 30s, 15m, 12h, 1d, 1w, 1h30m';

// 'ms' is listed before 'm' so "10ms" is not read as 10 minutes followed by junk.
const PART = /(\d+(?:\.\d+)?)(ms|w|d|h|m|s)/y;
const PLAIN = /^\d+(?:\.\d+)?$/;
// Longer inputs are certainly mistakes (or hostile); refusing them keeps parsing cheap.
const MAX_INPUT = 64;

function invalid(input: unknown, why?: string): TierError {
  let shown: string;
  if (typeof input === 'string') {
    shown = JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input);
  } else {
    shown = typeof input === 'number' ? String(input) : typeof input;
  }
  return new TierError(
    'INVALID_ARGUMENT',
    `invalid duration ${shown}${why ? ` (${why})` : ''}: expected ${ACCEPTED}`,
    {
      details: { input: typeof input === 'string' ? input.slice(0, 200) : input },
    },
  );
}

/**
 * Parses a duration into milliseconds: `500ms`, `30s`, `15m`, `12h`, `1d`, `1w`,
 * compounds such as `1h30m` or `1w2d` (largest unit first, each unit once),
 * and plain numbers (strings of digits or numbers) as milliseconds. Fractions are
 * allowed per part (`1.5h`). Anything else throws TierError `INVALID_ARGUMENT`.
 */
export function parseDuration(input: string | number): number {
  if (typeof input === 'number') {
    if (Number.isFinite(input) && input >= 0 && input <= Number.MAX_SAFE_INTEGER) return input;
    throw invalid(input, input < 0 ? 'negative' : 'not a finite number');
  }
  if (typeof input !== 'string') throw invalid(input);
  const s = input.trim();
  if (s.length === 0) throw invalid(input, 'empty');
  if (s.length > MAX_INPUT) throw invalid(input, 'too long');
  let total: number;
  if (PLAIN.test(s)) {
    total = Number(s);
  } else {
    total = 0;
    let pos = 0;
    let lastRank = -1;
    while (pos < s.length) {
      PART.lastIndex = pos;
      const m = PART.exec(s);
      if (m === null) throw invalid(input, s[0] === '-' ? 'negative' : undefined);
      const rank = UNIT_RANK[m[2]];
      if (rank <= lastRank) throw invalid(input, 'units must be largest first, each at most once');
      lastRank = rank;
      total += Number(m[1]) * UNIT_MS[m[2]];
      pos = PART.lastIndex;
    }
  }
  if (!(total <= Number.MAX_SAFE_INTEGER)) throw invalid(input, 'too large');
  // Fractional parts ("1.1s") leave float noise; microsecond precision is plenty
  // (and integers, however large, must come back exactly).
  return Number.isInteger(total) ? total : Math.round(total * 1000) / 1000;
}

/**
 * Formats milliseconds as a compact compound duration that `parseDuration`
 * reads back: 604800000 → `1w`, 5400000 → `1h30m`, 1500 → `1s500ms`, 0 → `0ms`.
 */
export function formatDuration(ms: number): string {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > Number.MAX_SAFE_INTEGER) {
    throw new TierError(
      'INVALID_ARGUMENT',
      `formatDuration: expected a non-negative finite number of milliseconds up to ${Number.MAX_SAFE_INTEGER}, got ${String(ms)}`,
    );
  }
  let rest = ms;
  let out = '';
  for (const [unit, size] of UNITS) {
    if (size === 1) break;
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  rest = Math.round(rest * 1000) / 1000;
  if (rest > 0 || out === '') out += `${rest}ms`;
  return out;
}
