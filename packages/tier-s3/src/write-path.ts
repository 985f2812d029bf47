/**
 * The write path: PutObject for small objects, else a multipart upload from
 * bounded buffers (never a streamed body of unknown length). Any failure aborts
 * the upload, so nothing partial is published.
 */
import { setMaxListeners } from 'node:events';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  abortError,
  checkSize,
  concat,
  type ObjectMeta,
  TierError,
  throwIfAborted,
  type WriteData,
  type WriteOptions,
} from '@tierkit/tier-core';
import { errorName, toTierError } from './errors.js';
import type { ResolvedS3Config } from './options.js';
import { type RetryContext, retry } from './request.js';

const MAX_PARTS = 10_000;

/** What the write path needs of its tier. */
export interface WriteIo {
  readonly client: S3Client;
  readonly config: ResolvedS3Config;
  readonly name: string;
  check(key: string, signal: AbortSignal | undefined): void;
  head(key: string, signal: AbortSignal | undefined): Promise<ObjectMeta | undefined>;
  ctx(op: string, key: string | undefined): RetryContext;
}

/** `write`: a PutObject up to `multipartThreshold` (a stream is gathered that far first), else a multipart upload. */
export async function writeObject(
  io: WriteIo,
  key: string,
  data: WriteData,
  options?: WriteOptions,
): Promise<ObjectMeta> {
  const signal = options?.signal;
  io.check(key, signal);
  const expected = options?.size;
  if (expected !== undefined && (!Number.isSafeInteger(expected) || expected < 0)) {
    throw new TierError('INVALID_ARGUMENT', `write size must be an integer ≥ 0, got ${expected}`, {
      key,
      retryable: false,
    });
  }
  if (data instanceof Uint8Array) {
    checkSize(data.byteLength, expected, key);
    if (data.byteLength <= io.config.multipartThreshold) return put(io, key, data, signal);
    return multipart(io, key, chunksOf(data), data.byteLength, signal);
  }
  if (!data || typeof (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] !== 'function') {
    throw new TierError(
      'INVALID_ARGUMENT',
      'write data must be a Uint8Array or an AsyncIterable<Uint8Array>',
      {
        key,
        retryable: false,
      },
    );
  }
  // Gather up to the threshold: a small stream is one PutObject with a known length.
  const it = (data as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
  const head: Uint8Array[] = [];
  let total = 0;
  let ended = false;
  while (total <= io.config.multipartThreshold) {
    throwIfAborted(signal, key);
    const n = await it.next();
    if (n.done) {
      ended = true;
      break;
    }
    const chunk = checkChunk(n.value, key);
    // Copy: the producer may reuse its chunk once we ask for the next one.
    head.push(chunk.slice());
    total += chunk.byteLength;
    if (expected !== undefined && total > expected) {
      await it.return?.();
      checkSize(total, expected, key);
    }
  }
  if (ended) {
    checkSize(total, expected, key);
    return put(io, key, concat(head, total), signal);
  }
  async function* rest(): AsyncGenerator<Uint8Array> {
    yield* head;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      yield checkChunk(n.value, key);
    }
  }
  return multipart(io, key, rest(), expected, signal);
}

async function put(
  io: WriteIo,
  key: string,
  body: Uint8Array,
  signal: AbortSignal | undefined,
): Promise<ObjectMeta> {
  const r = await retry(io.ctx('write', key), signal, (_, scope) =>
    io.client.send(
      new PutObjectCommand({
        Bucket: io.config.bucket,
        Key: io.config.prefix + key,
        Body: body,
        ContentLength: body.byteLength,
      }),
      { abortSignal: scope.signal },
    ),
  );
  return { key, size: body.byteLength, ...(r.ETag ? { etag: r.ETag } : {}) };
}

/**
 * A multipart upload with bounded memory: parts are cut from the stream into
 * fresh buffers and at most `uploadConcurrency` are in flight. Any failure (a
 * size mismatch included) aborts the upload, so nothing is published.
 */
async function multipart(
  io: WriteIo,
  key: string,
  source: AsyncIterable<Uint8Array>,
  expected: number | undefined,
  signal: AbortSignal | undefined,
): Promise<ObjectMeta> {
  const full = io.config.prefix + key;
  const Bucket = io.config.bucket;
  const partSize =
    expected === undefined
      ? io.config.uploadPartSize
      : Math.max(io.config.uploadPartSize, Math.ceil(expected / MAX_PARTS));
  const created = await retry(io.ctx('write', key), signal, (_, scope) =>
    io.client.send(new CreateMultipartUploadCommand({ Bucket, Key: full }), { abortSignal: scope.signal }),
  );
  const UploadId = created.UploadId;
  if (!UploadId) throw new TierError('IO', `write '${key}': the server returned no UploadId`, { key });
  const failure = new AbortController();
  const inner = signal ? AbortSignal.any([signal, failure.signal]) : failure.signal;
  setMaxListeners(0, inner);
  const parts: { PartNumber: number; ETag: string | undefined }[] = [];
  const inFlight = new Set<Promise<void>>();
  let uploadError: unknown;
  let total = 0;
  try {
    let partNumber = 0;
    const upload = (body: Uint8Array) => {
      const PartNumber = ++partNumber;
      if (PartNumber > MAX_PARTS) {
        throw new TierError(
          'CAPACITY',
          `write '${key}': more than ${MAX_PARTS} parts; raise uploadPartSize`,
          {
            key,
            retryable: false,
          },
        );
      }
      const p = retry(io.ctx('write', key), inner, (_, scope) =>
        io.client.send(
          new UploadPartCommand({
            Bucket,
            Key: full,
            UploadId,
            PartNumber,
            Body: body,
            ContentLength: body.byteLength,
          }),
          { abortSignal: scope.signal },
        ),
      ).then(
        (r) => {
          parts.push({ PartNumber, ETag: r.ETag });
        },
        (err) => {
          uploadError ??= err;
          failure.abort();
        },
      );
      const tracked = p.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    };
    let buf = new Uint8Array(partSize);
    let fill = 0;
    for await (const chunk of source) {
      if (uploadError !== undefined) break;
      throwIfAborted(signal, key);
      total += chunk.byteLength;
      if (expected !== undefined && total > expected) checkSize(total, expected, key);
      let at = 0;
      while (at < chunk.byteLength) {
        const n = Math.min(partSize - fill, chunk.byteLength - at);
        buf.set(chunk.subarray(at, at + n), fill);
        fill += n;
        at += n;
        if (fill === partSize) {
          // Bounded memory: wait for a slot before cutting another part.
          while (inFlight.size >= io.config.uploadConcurrency) await Promise.race(inFlight);
          if (uploadError !== undefined) break;
          upload(buf);
          buf = new Uint8Array(partSize);
          fill = 0;
        }
      }
    }
    if (uploadError === undefined) {
      checkSize(total, expected, key);
      if (fill > 0 || partNumber === 0) upload(buf.subarray(0, fill));
    }
    await Promise.all(inFlight);
    if (uploadError !== undefined) throw uploadError;
    throwIfAborted(signal, key);
    parts.sort((a, b) => a.PartNumber - b.PartNumber);
    const done = await retry(io.ctx('write', key), signal, async (attempt, scope) => {
      try {
        return await io.client.send(
          new CompleteMultipartUploadCommand({
            Bucket,
            Key: full,
            UploadId,
            MultipartUpload: { Parts: parts },
          }),
          { abortSignal: scope.signal },
        );
      } catch (err) {
        // A retried Complete whose first try succeeded finds no upload: the object is there.
        if (attempt > 1 && errorName(err) === 'NoSuchUpload') {
          const meta = await io.head(key, signal);
          if (meta && meta.size === total) return { ETag: meta.etag };
        }
        throw err;
      }
    });
    return { key, size: total, ...(done.ETag ? { etag: done.ETag } : {}) };
  } catch (err) {
    failure.abort();
    await Promise.allSettled(inFlight);
    await retry(io.ctx('write', key), undefined, (_, scope) =>
      io.client.send(new AbortMultipartUploadCommand({ Bucket, Key: full, UploadId }), {
        abortSignal: scope.signal,
      }),
    ).catch(() => {
      // Best effort: a lifecycle rule cleans up what an unreachable server kept.
    });
    if (signal?.aborted) throw abortError(signal, key);
    throw toTierError(err, { op: 'write', key, tier: io.name });
  }
}

function checkChunk(chunk: unknown, key: string): Uint8Array {
  if (!(chunk instanceof Uint8Array)) {
    throw new TierError('INVALID_ARGUMENT', 'write streams must yield Uint8Array chunks', {
      key,
      retryable: false,
    });
  }
  return chunk;
}

async function* chunksOf(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}
