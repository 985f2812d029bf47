/**
 * Bytes moved against a total, drawn by the CLI's renderer (`@tierkit/warmer/progress`):
 * a bar on a terminal wide enough, a line every two seconds otherwise.
 */
import { formatBytes, ProgressBar, progressModeFor } from '@tierkit/warmer/progress';

export class Progress {
  readonly #total: number;
  readonly #bar: ProgressBar;
  readonly #start = process.hrtime.bigint();
  #done = 0;

  constructor(label: string, total: number, out: NodeJS.WriteStream = process.stdout) {
    this.#total = total;
    this.#bar = new ProgressBar({
      mode: progressModeFor(out),
      write: (s) => out.write(s),
      columns: out.isTTY ? out.columns : undefined,
      label: `  ${label}`,
      plainIntervalMs: 2000,
      barIntervalMs: 100,
    });
  }

  get seconds(): number {
    return Number(process.hrtime.bigint() - this.#start) / 1e9;
  }

  add(bytes: number): void {
    this.#done += bytes;
    this.#bar.update(this.#fraction(), this.#text());
  }

  finish(): void {
    this.#bar.update(this.#fraction(), this.#text(), true);
    this.#bar.done();
  }

  #fraction(): number {
    return this.#total > 0 ? this.#done / this.#total : 1;
  }

  #text(): string {
    const s = this.seconds;
    return `${formatBytes(this.#done)} / ${formatBytes(this.#total)}  ${formatBytes(s > 0 ? this.#done / s : 0)}/s`;
  }
}
