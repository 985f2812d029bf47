/**
 * What the CLI prints where people read it: progress on terminals of any width
 * (a real pty made by util-linux `script`, sized with `stty`), negative numbers
 * given to numeric flags, and `stat`'s last-use time.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, CLI, MiB, tierkit } from './cli-harness.js';

let work: string;
let origin: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'tierkit-terminal-'));
  origin = join(work, 'origin');
  await mkdir(join(origin, 'm'), { recursive: true });
  await writeFile(join(origin, 'm', 'a.bin'), bytes(MiB, 1));
  await writeFile(join(origin, 'm', 'b.json'), '{"ok":true}');
});

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const hasScript = spawnSync('script', ['--version']).status === 0;
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs `tierkit args` on a pty of `columns` columns; returns what the terminal received. */
function onTerminal(columns: number, args: string[]): { code: number | null; screen: string } {
  const cmd = `stty cols ${columns} rows 24 && exec ${quote(process.execPath)} ${quote(CLI)} ${args.map(quote).join(' ')}`;
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH },
  });
  return { code: r.status, screen: r.stdout };
}

describe.skipIf(!hasScript)('progress on a terminal (util-linux script not installed: skipped)', () => {
  for (const columns of [0, 20]) {
    it(`${columns} columns: plain progress lines, never a cut bar`, () => {
      const r = onTerminal(columns, ['warm', '--origin', origin, '--cache', join(work, `c${columns}`), 'm/']);
      expect(r.code, r.screen).toBe(0);
      expect(r.screen).not.toContain('\x1b[2K');
      expect(r.screen).not.toContain('█');
      expect(r.screen).toMatch(/^progress 100% 2\/2 files {2}1\.0 MiB\/1\.0 MiB {2}.* eta \S+\r?$/m);
    });
  }

  it('a wide terminal gets a bar redrawn in place, kept within its width', () => {
    const r = onTerminal(100, ['warm', '--origin', origin, '--cache', join(work, 'c100'), 'm/']);
    expect(r.code, r.screen).toBe(0);
    const frames = frameLines(r.screen);
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.at(-1)).toMatch(/^\[█+\] 100% 2\/2 files {2}1\.0 MiB\/1\.0 MiB/);
    for (const f of frames) expect(f.length).toBeLessThan(100);
  });

  it('a terminal too narrow for a bar and its numbers redraws the numbers alone', () => {
    const r = onTerminal(50, ['warm', '--origin', origin, '--cache', join(work, 'c50'), 'm/']);
    expect(r.code, r.screen).toBe(0);
    const frames = frameLines(r.screen);
    expect(frames.at(-1)).toMatch(/^100% 2\/2 files {2}1\.0 MiB\/1\.0 MiB/);
    for (const f of frames) expect(f.length).toBeLessThan(50);
  });
});

/** What each in-place redraw (`\r` + erase line) put on the line. */
const frameLines = (screen: string) =>
  screen
    .split('\x1b[2K')
    .slice(1)
    .map((f) => f.split(/\r|\n/)[0]!);

describe('negative values for numeric flags', () => {
  const cases: [string[], string][] = [
    [['warm', '--concurrency', '-1', 'm/'], '--concurrency must be a positive integer, got -1'],
    [['warm', '--concurrency=-3', 'm/'], '--concurrency must be a positive integer, got -3'],
    [['warm', '--block-size', '-8MiB', 'm/'], '--block-size must be a size such as 8MiB, got -8MiB'],
    [['warm', '--max-bytes-in-flight', '-1', 'm/'], '--max-bytes-in-flight must be a size such as 256MiB'],
    [['warm', '--rank', '-1', '--world-size', '2', 'm/'], '--rank must be an integer ≥ 0, got -1'],
    [['warm', '--world-size', '-2', '--rank', '0', 'm/'], '--world-size must be a positive integer, got -2'],
    [['purge', '--older-than', '-2d'], '--older-than must be a duration such as 12h or 7d, got -2d'],
    [['purge', '--max-bytes', '-1GiB'], '--max-bytes must be a size such as 10GiB, got -1GiB'],
    [['ls', '--by-prefix', '--depth', '-1'], '--depth must be a positive integer, got -1'],
    [['metrics', '--metrics-port', '-9'], '--metrics-port must be a port number (0-65535), got -9'],
  ];
  it.each(cases)('%j is a usage error that says what the flag takes', async (args, message) => {
    const r = await tierkit([...args, '--cache', join(work, 'neg'), '--origin', origin]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toMatch(/ambiguous|Unknown option/);
  });

  it('a value for a path flag that looks like a negative number is taken as the value', async () => {
    const r = await tierkit(['warm', '--cache', join(work, 'neg'), '-c', '-1', 'm/']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain('cannot read config file -1: ENOENT');
  });
});

describe('tierkit stat', () => {
  it('prints the last use as an ISO time and an age; --json keeps epoch milliseconds', async () => {
    const cache = join(work, 'stat');
    // A fixed clock (TIERKIT_NOW_MS, for tests): used at t0, looked at three hours later.
    const t0 = Date.UTC(2026, 4, 1, 10, 0, 0, 250);
    const w = await tierkit(['warm', '--origin', origin, '--cache', cache, 'm/b.json'], {
      TIERKIT_NOW_MS: String(t0),
    });
    expect(w.code, w.stderr).toBe(0);
    const later = { TIERKIT_NOW_MS: String(t0 + 3 * 3600_000) };
    const text = await tierkit(['stat', '--cache', cache, 'm/b.json'], later);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^ {2}lastUsed +2026-05-01T10:00:00\.250Z \(3h ago\)$/m);

    const json = await tierkit(['stat', '--cache', cache, 'm/b.json', '--json'], later);
    expect(JSON.parse(json.stdout).entries[0].lastUsed).toBe(t0);
  });
});
