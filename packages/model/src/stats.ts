/** Counts what a model reads, per file, for progress bars and metrics. */
import type { LoadStats } from './types.js';

/** Told after each read: for progress bars. */
export interface ReadEvent {
  readonly file: string;
  readonly bytes: number;
  /** Bytes read so far by this model. */
  readonly totalBytes: number;
}

export class StatsCounter {
  constructor(private readonly onRead?: (event: ReadEvent) => void) {}
  #bytes = 0;
  #requests = 0;
  #tensors = 0;
  #tensorBytes = 0;
  readonly #files = new Map<string, { bytesRead: number; requests: number }>();

  read(file: string, bytes: number): void {
    this.#bytes += bytes;
    this.#requests++;
    let f = this.#files.get(file);
    if (!f) {
      f = { bytesRead: 0, requests: 0 };
      this.#files.set(file, f);
    }
    f.bytesRead += bytes;
    f.requests++;
    this.onRead?.({ file, bytes, totalBytes: this.#bytes });
  }

  delivered(bytes: number): void {
    this.#tensors++;
    this.#tensorBytes += bytes;
  }

  snapshot(): LoadStats {
    const files: Record<string, { bytesRead: number; requests: number }> = {};
    for (const [k, v] of this.#files) files[k] = { ...v };
    return {
      bytesRead: this.#bytes,
      requests: this.#requests,
      tensors: this.#tensors,
      tensorBytes: this.#tensorBytes,
      files,
    };
  }
}
