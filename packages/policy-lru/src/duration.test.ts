import { isTierError } from '@tierkit/tier-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from './duration.js';

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['12h', 43_200_000],
    ['1d', 86_400_000],
    ['1w', 604_800_000],
    ['1h30m', 5_400_000],
    ['1w2d3h4m5s6ms', 604_800_000 + 2 * 86_400_000 + 3 * 3_600_000 + 4 * 60_000 + 5_000 + 6],
    ['1.5h', 5_400_000],
    ['1.1s', 1_100],
    ['0.5ms', 0.5],
    ['1500', 1_500],
    ['0', 0],
    ['0s', 0],
    ['  1d  ', 86_400_000],
    [250, 250],
    [0, 0],
    [1.25, 1.25],
  ] as const)('%j → %d', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each([
    '',
    '   ',
    '-1s',
    '-5',
    '1.5.3d',
    '10x',
    '1 d',
    '1h 30m',
    'd',
    '1h30',
    '30m1h',
    '1m1m',
    '1D',
    '1e3',
    '+5s',
    '.5s',
    '5.s',
    '0x10',
    'NaN',
    'Infinity',
    '1msx',
    '1d\u0000',
    '٣s', // Arabic-Indic digit
    '9'.repeat(65),
    '99999999999w',
    `${'1'.repeat(30)}s`,
  ])('rejects %j with INVALID_ARGUMENT naming the units', (input) => {
    const err = thrown(() => parseDuration(input));
    expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
    expect((err as Error).message).toMatch(/w \(weeks\).*ms \(milliseconds\)/);
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60, null, undefined, {}, ['1s']])(
    'rejects the non-duration %j',
    (input) => {
      expect(
        isTierError(
          thrown(() => parseDuration(input as never)),
          'INVALID_ARGUMENT',
        ),
      ).toBe(true);
    },
  );

  it('never throws anything but INVALID_ARGUMENT on arbitrary strings, and never a negative or NaN', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[0-9.smhdw-]{0,12}$/)), (s) => {
        try {
          const ms = parseDuration(s);
          expect(ms).toBeGreaterThanOrEqual(0);
          expect(Number.isFinite(ms)).toBe(true);
        } catch (err) {
          expect(isTierError(err, 'INVALID_ARGUMENT')).toBe(true);
        }
      }),
      { numRuns: 5_000 },
    );
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0ms'],
    [500, '500ms'],
    [1_500, '1s500ms'],
    [5_400_000, '1h30m'],
    [604_800_000, '1w'],
    [8 * 86_400_000, '1w1d'],
    [0.5, '0.5ms'],
  ])('%d → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('rejects negative and non-finite input', () => {
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) {
      expect(
        isTierError(
          thrown(() => formatDuration(bad)),
          'INVALID_ARGUMENT',
        ),
      ).toBe(true);
    }
  });

  it('round-trips through parseDuration', () => {
    fc.assert(
      fc.property(fc.oneof(fc.nat({ max: 10 * 604_800_000 }), fc.maxSafeNat()), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
      { numRuns: 5_000 },
    );
  });
});
