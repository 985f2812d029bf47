import { Readable } from 'node:stream';
import { abortError, TierError, throwIfAborted } from './errors.js';
import type { WriteData } from './tier.js';

/** Collects write data into one buffer, checking an expected size if given. */
export async function collectBytes(
  data: WriteData,
  options: { size?: number; signal?: AbortSignal; key?: string } = {},
): Promise<Uint8Array> {
  if (data instanceof Uint8Array) {
    checkSize(data.byteLength, options.size, options.key);
    return data;
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of data) {
    throwIfAborted(options.signal, options.key);
    if (!(chunk instanceof Uint8Array)) {
      throw new TierError('INVALID_ARGUMENT', 'write streams must yield Uint8Array chunks', {
        key: options.key,
        retryable: false,
      });
    }
    chunks.push(chunk);
    total += chunk.byteLength;
    if (options.size !== undefined && total > options.size) checkSize(total, options.size, options.key);
  }
  checkSize(total, options.size, options.key);
  return concat(chunks, total);
}

export function checkSize(actual: number, expected: number | undefined, key?: string): void {
  if (expected !== undefined && actual !== expected) {
    throw new TierError(
      'INTEGRITY',
      `write of ${actual} bytes does not match the declared size ${expected}`,
      {
        key,
        retryable: false,
        details: { actual, expected },
      },
    );
  }
}

/** Concatenates into a fresh, plain Uint8Array (never a view of a chunk, never a Buffer). */
export function concat(chunks: readonly Uint8Array[], total?: number): Uint8Array {
  const size = total ?? chunks.reduce((n, c) => n + c.byteLength, 0);
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** A readable stream over a byte array, in chunks so consumers see back-pressure. */
export function streamOf(bytes: Uint8Array, chunkSize = 1 << 20): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= bytes.byteLength) {
        this.push(null);
        return;
      }
      const end = Math.min(at + chunkSize, bytes.byteLength);
      this.push(bytes.subarray(at, end));
      at = end;
    },
  });
}

/** Rejects with ABORTED when `signal` fires, else settles like `promise`. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, key?: string): Promise<T> {
  if (!signal) return promise;
  throwIfAborted(signal, key);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal, key));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
