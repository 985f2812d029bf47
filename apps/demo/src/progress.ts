import { formatBytes } from './size.js';

/** A progress bar on a terminal, a line every few seconds otherwise. */
export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #tty: boolean;
  readonly #start = process.hrtime.bigint();
  #done = 0;
  #lastPrint = 0;

  constructor(label: string, total: number, out: NodeJS.WriteStream = process.stdout) {
    this.#label = label;
    this.#total = total;
    this.#tty = Boolean(out.isTTY);
  }

  get seconds(): number {
    return Number(process.hrtime.bigint() - this.#start) / 1e9;
  }

  add(bytes: number): void {
    this.#done += bytes;
    const now = Date.now();
    const interval = this.#tty ? 100 : 2000;
    if (now - this.#lastPrint >= interval) {
      this.#lastPrint = now;
      this.#print(false);
    }
  }

  finish(): void {
    this.#print(true);
  }

  #print(final: boolean): void {
    const s = this.seconds;
    const rate = s > 0 ? this.#done / s / 1024 ** 2 : 0;
    const frac = this.#total > 0 ? this.#done / this.#total : 1;
    const text = `${formatBytes(this.#done)} / ${formatBytes(this.#total)}  ${rate.toFixed(0)} MiB/s`;
    if (this.#tty) {
      const width = 30;
      const filled = Math.round(frac * width);
      const bar = `${'█'.repeat(filled)}${'░'.repeat(width - filled)}`;
      process.stdout.write(`\r  ${this.#label} ${bar} ${(frac * 100).toFixed(0).padStart(3)}%  ${text}   `);
      if (final) process.stdout.write('\n');
    } else {
      process.stdout.write(`  ${this.#label} ${(frac * 100).toFixed(0).padStart(3)}%  ${text}\n`);
    }
  }
}
