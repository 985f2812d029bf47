/**
 * The one progress renderer of the `tierkit` CLI and the sample apps
 * (`@tierkit/warmer/progress`): a bar redrawn in place on a terminal wide enough
 * to hold it, a plain line now and then otherwise (logs, CI, a terminal that
 * reports no width), nothing in mode 'none'.
 */
export { formatBytes, formatSeconds } from './format.js';

export type ProgressMode = 'bar' | 'plain' | 'none';

/**
 * Fewer columns than this cannot hold a bar and its numbers: plain lines instead.
 * A terminal reporting 0 columns (a pty nobody sized) falls here too.
 */
export const MIN_BAR_COLUMNS = 40;
/** Width assumed when a bar is asked for where no width is known (a pipe). */
export const DEFAULT_COLUMNS = 80;
const MAX_COLUMNS = 120;

export interface ProgressBarOptions {
  /** What was asked for; 'bar' becomes 'plain' when `columns` is under MIN_BAR_COLUMNS. */
  mode: ProgressMode;
  write: (s: string) => void;
  /** The terminal's width (`stream.columns`); undefined: unknown, DEFAULT_COLUMNS. */
  columns?: number;
  /** Starts every line: `upload`, `load`. Without one a plain line starts `progress` and a bar has none. */
  label?: string;
  /** Least time between two plain lines (default 1000 ms); the final line always prints. */
  plainIntervalMs?: number;
  /** Least time between two redraws of the bar (default 80 ms). */
  barIntervalMs?: number;
}

/** The mode a stream suits: a bar on a terminal, plain lines elsewhere. */
export function progressModeFor(stream: { isTTY?: boolean }): ProgressMode {
  return stream.isTTY ? 'bar' : 'plain';
}

export class ProgressBar {
  /** The mode in effect (a too-narrow terminal turns 'bar' into 'plain'). */
  readonly mode: ProgressMode;
  /** The width a bar line is kept within. */
  readonly width: number;
  readonly #write: (s: string) => void;
  readonly #label: string | undefined;
  readonly #plainMs: number;
  readonly #barMs: number;
  #last = 0;
  #drawn = false;
  #lastLine = '';
  #pending: { fraction: number; text: string } | undefined;

  constructor(o: ProgressBarOptions) {
    const cols = o.columns === undefined ? DEFAULT_COLUMNS : o.columns;
    const tooNarrow = !Number.isFinite(cols) || cols < MIN_BAR_COLUMNS;
    this.mode = o.mode === 'bar' && tooNarrow ? 'plain' : o.mode;
    this.width = Math.min(tooNarrow ? DEFAULT_COLUMNS : cols, MAX_COLUMNS) - 1;
    this.#write = o.write;
    this.#label = o.label;
    this.#plainMs = o.plainIntervalMs ?? 1000;
    this.#barMs = o.barIntervalMs ?? 80;
  }

  /** `fraction` 0..1 done; `text` the numbers after it; `final` forces this state out. */
  update(fraction: number, text: string, final = false): void {
    if (this.mode === 'none') return;
    this.#pending = { fraction, text };
    const now = Date.now();
    if (this.mode === 'bar') {
      if (now - this.#last < this.#barMs && !final) return;
      this.#last = now;
      this.#write(`\r\x1b[2K${this.barLine(fraction, text)}`);
      this.#drawn = true;
      this.#pending = undefined;
      return;
    }
    if (now - this.#last < this.#plainMs && !final) return;
    this.#pending = undefined;
    const line = this.plainLine(fraction, text);
    if (line === this.#lastLine) return;
    this.#last = now;
    this.#lastLine = line;
    this.#write(`${line}\n`);
  }

  /** Clears the bar so a normal line can be printed; it is redrawn on the next update. */
  clear(): void {
    if (this.mode === 'bar' && this.#drawn) {
      this.#write('\r\x1b[2K');
      this.#drawn = false;
    }
  }

  /** Prints the last state if a throttle held it back, and leaves the final bar on screen. */
  done(): void {
    const p = this.#pending;
    if (p) this.update(p.fraction, p.text, true);
    if (this.mode === 'bar' && this.#drawn) this.#write('\n');
    this.#drawn = false;
  }

  /** `[label ][████░░░░]  42% text`, within the width: the bar goes before the numbers are cut. */
  barLine(fraction: number, text: string): string {
    const pct = percent(fraction).padStart(4);
    const head = this.#label ? `${this.#label} ` : '';
    const cells = Math.min(40, this.width - head.length - pct.length - text.length - 4);
    if (cells >= 10) {
      const full = Math.round(clamp01(fraction) * cells);
      return `${head}[${'█'.repeat(full)}${'░'.repeat(cells - full)}] ${pct} ${text}`;
    }
    return `${head}${pct.trim()} ${text}`.slice(0, this.width);
  }

  /** `label 42% text`: a line for logs, never cut. */
  plainLine(fraction: number, text: string): string {
    return `${this.#label ?? 'progress'} ${percent(fraction)} ${text}`;
  }
}

const clamp01 = (f: number) => (Number.isFinite(f) ? Math.min(1, Math.max(0, f)) : 0);
const percent = (f: number) => `${Math.floor(clamp01(f) * 100)}%`;
