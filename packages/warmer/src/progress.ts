/**
 * Progress for the CLI: a bar redrawn in place on a terminal, a plain line now
 * and then otherwise (logs, CI), nothing with --json.
 */
import { formatBytes, formatSeconds } from './util.js';
import type { WarmProgress } from './warm.js';

export type ProgressMode = 'bar' | 'plain' | 'none';

export class ProgressView {
  #last = 0;
  #drawn = false;
  #lastLine = '';
  #latest: WarmProgress | undefined;

  constructor(
    readonly mode: ProgressMode,
    readonly write: (s: string) => void,
    readonly width = Math.min(process.stderr.columns ?? 100, 120),
  ) {}

  update(p: WarmProgress): void {
    this.#latest = p;
    if (this.mode === 'none' || p.filesToFetch === 0) return;
    const now = Date.now();
    const finished = p.filesDone + p.filesFailed === p.filesToFetch;
    if (this.mode === 'bar') {
      if (now - this.#last < 80 && !finished) return;
      this.#last = now;
      this.write(`\r\x1b[2K${this.line(p, true)}`);
      this.#drawn = true;
      return;
    }
    // Plain: a line a second at most, and the last one.
    if (now - this.#last < 1000 && !finished) return;
    const line = this.line(p, false);
    if (line === this.#lastLine) return;
    this.#last = now;
    this.#lastLine = line;
    this.write(`${line}\n`);
  }

  /** Clears the bar so a normal line can be printed; it is redrawn on the next update. */
  clear(): void {
    if (this.mode === 'bar' && this.#drawn) {
      this.write('\r\x1b[2K');
      this.#drawn = false;
    }
  }

  /** Leaves the final bar on screen. */
  done(): void {
    if (this.mode === 'bar' && this.#latest && this.#latest.filesToFetch > 0 && !this.#drawn) {
      this.write(this.line(this.#latest, true));
      this.#drawn = true;
    }
    if (this.mode === 'bar' && this.#drawn) this.write('\n');
    this.#drawn = false;
    this.#latest = undefined;
  }

  line(p: WarmProgress, bar: boolean): string {
    const frac =
      p.bytesTotal > 0
        ? p.bytesDone / p.bytesTotal
        : (p.filesDone + p.filesFailed) / Math.max(1, p.filesToFetch);
    const pct = `${Math.floor(frac * 100)}%`.padStart(4);
    const stats =
      `${p.filesDone + p.filesFailed}/${p.filesToFetch} files  ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}  ` +
      `${formatBytes(p.bytesPerSecond)}/s  eta ${formatSeconds(p.etaSeconds)}` +
      (p.filesFailed ? `  ${p.filesFailed} failed` : '');
    if (!bar) return `progress ${pct.trim()} ${stats}`;
    const cells = Math.max(10, Math.min(40, this.width - stats.length - 10));
    const full = Math.round(frac * cells);
    return `[${'█'.repeat(full)}${'░'.repeat(cells - full)}] ${pct} ${stats}`.slice(
      0,
      Math.max(20, this.width - 1),
    );
  }
}
