import { describe, expect, it } from 'vitest';
import { formatBytes, formatSeconds } from './util.js';

describe('formatBytes', () => {
  it('never prints long fractions: whole bytes, else one decimal', () => {
    expect(formatBytes(45.57640750670242)).toBe('46 B');
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023.4)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(2 ** 30 * 12)).toBe('12.0 GiB');
    // Rounding that reaches the next unit moves to it.
    expect(formatBytes(1024 * 1024 - 1)).toBe('1.0 MiB');
    expect(formatBytes(Number.NaN)).toBe('-');
    expect(formatBytes(-2048)).toBe('-2.0 KiB');
    for (const n of [0.1, 1 / 3, 999.999, 12345.6789, 2 ** 40 / 7, 2 ** 53]) {
      expect(formatBytes(n)).toMatch(/^\d+(\.\d)? (B|KiB|MiB|GiB|TiB|PiB)$/);
    }
  });

  it('formats durations', () => {
    expect(formatSeconds(3725)).toBe('1h02m');
    expect(formatSeconds(undefined)).toBe('--');
  });
});
