/**
 * Progress of a warm or a bake for the CLI, drawn by the shared renderer
 * (progress-bar.ts): a bar on a terminal, a plain line now and then otherwise
 * (logs, CI, a terminal too narrow or reporting no width), nothing with --json.
 */
import { formatBytes, formatSeconds } from './format.js';
import { ProgressBar, type ProgressMode } from './progress-bar.js';
import type { WarmProgress } from './warm.js';

export type { ProgressMode } from './progress-bar.js';

export class ProgressView {
  readonly #bar: ProgressBar;

  /** `columns`: the terminal's width (undefined where unknown: a pipe). */
  constructor(mode: ProgressMode, write: (s: string) => void, columns?: number) {
    this.#bar = new ProgressBar({ mode, write, columns });
  }

  /** The mode in effect ('bar' on a terminal too narrow for one is 'plain'). */
  get mode(): ProgressMode {
    return this.#bar.mode;
  }

  update(p: WarmProgress): void {
    if (p.filesToFetch === 0) return;
    const settled = p.filesDone + p.filesFailed;
    const fraction = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : settled / p.filesToFetch;
    const text =
      `${settled}/${p.filesToFetch} files  ${formatBytes(p.bytesDone)}/${formatBytes(p.bytesTotal)}  ` +
      `${formatBytes(p.bytesPerSecond)}/s  eta ${formatSeconds(p.etaSeconds)}` +
      (p.filesFailed ? `  ${p.filesFailed} failed` : '');
    this.#bar.update(fraction, text, settled === p.filesToFetch);
  }

  /** Clears the bar so a normal line can be printed; it is redrawn on the next update. */
  clear(): void {
    this.#bar.clear();
  }

  /** Leaves the final bar on screen. */
  done(): void {
    this.#bar.done();
  }
}

/** A view on stderr: its width is read once, here. */
export function stderrProgress(mode: ProgressMode): ProgressView {
  const columns = process.stderr.isTTY ? process.stderr.columns : undefined;
  return new ProgressView(mode, (s) => process.stderr.write(s), columns);
}
