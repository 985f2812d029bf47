/**
 * A read as an ordered stream: the first GET's body, then parts fetched ahead
 * in parallel (a window sized by the first part's speed) and handed on in
 * order, within the tier's byte budget. A stream of a whole object is hashed
 * as it goes and fails, rather than ends, when it does not match its MD5 ETag.
 */
import { Readable } from 'node:stream';
import { abortError, DigestSession, INLINE_DIGEST_BYTES, isTierError, TierError } from '@tierkit/tier-core';
import { toTierError } from './errors.js';
import { etagMd5 } from './integrity.js';
import type { First, ReadPath, Target } from './read-path.js';

/** An ordered stream of `r` from parallel parts, with bounded read-ahead. */
export function orderedStream(
  p: ReadPath,
  key: string,
  first: First,
  firstBudget: number,
  r: { offset: number; length: number },
  ac: AbortController,
  cleanup: () => void,
): Readable {
  const signal = ac.signal;
  const t: Target = { key, full: p.config.prefix + key, size: first.size, etag: first.etag, signal };
  const firstLen = Math.min(firstBudget, r.length);
  const firstBuf = new Uint8Array(firstLen);
  let window = p.config.concurrency;
  const firstPromise = (async () => {
    let done = 0;
    try {
      const tf: Target = { ...t, signal: first.scope.signal };
      await p.pump(tf, first.res, r.offset, firstLen, first.bodyStart, firstBuf, 0, (n) => {
        done += n;
      });
    } catch (err) {
      p.firstBodyError(first, err, key, signal);
      await p.range(t, r.offset + done, firstLen - done, firstBuf, done, 1);
    } finally {
      first.scope.done();
    }
    const adaptive = p.config.adaptive;
    if (adaptive) {
      const rate = firstLen / Math.max((performance.now() - first.startedAt) / 1000, 1e-6);
      if (rate >= adaptive.fastBytesPerSecond) window = adaptive.fastConcurrency;
    }
    return firstBuf;
  })().catch((err: unknown) => {
    // A failed first part gives its budget back as the others do, or every later read would wait for it.
    p.budget.release(firstBudget);
    throw err;
  });
  type Pending = { length: number; promise: Promise<Uint8Array> };
  const queue: Pending[] = [{ length: firstBudget, promise: firstPromise }];
  // Avoid unhandled rejections for parts that fail while not yet awaited.
  firstPromise.catch(() => {});
  let nextOffset = r.offset + firstLen;
  const end = r.offset + r.length;
  let firstSettled = false;
  const schedule = () => {
    // Read-ahead opens up only once the first part has told the speed.
    const limit = firstSettled ? window : 1;
    while (queue.length < limit && nextOffset < end && !signal.aborted) {
      const offset = nextOffset;
      const length = Math.min(p.config.partSize, end - offset);
      nextOffset += length;
      const promise = (async () => {
        await p.budget.acquire(length, signal);
        try {
          await p.hooks.beforePart?.({ key, offset, length });
          const buf = new Uint8Array(length);
          await p.range(t, offset, length, buf, 0, 0);
          return buf;
        } catch (err) {
          p.budget.release(length);
          throw err;
        }
      })();
      promise.catch(() => {});
      queue.push({ length, promise });
    }
  };
  let finished = false;
  // A stream of the whole object is hashed as it goes, and checked before it ends.
  const md5 = p.config.verify && r.offset === 0 && r.length === first.size ? etagMd5(first.res) : undefined;
  // On tier-core's digest thread: the event loop only hands the chunks over.
  const hash =
    md5 !== undefined
      ? new DigestSession([{ algorithm: 'md5' }], { inline: first.size <= INLINE_DIGEST_BYTES })
      : undefined;
  return new Readable({
    highWaterMark: 1,
    async read() {
      const head = queue.shift();
      if (!head) {
        finished = true;
        cleanup();
        const got = hash ? (await hash.finish())[0] : undefined;
        if (got !== undefined && got !== md5) {
          // The bytes are already out: the stream fails rather than ends.
          this.destroy(
            new TierError('INTEGRITY', `read '${key}': the bytes streamed do not match the object's MD5`, {
              key,
              tier: p.name,
              retryable: false,
              details: { algorithm: 'md5', expected: md5, got },
            }),
          );
          return;
        }
        this.push(null);
        return;
      }
      try {
        const buf = await head.promise;
        p.budget.release(head.length);
        firstSettled = true;
        hash?.update(buf);
        await hash?.drain(32 * 1024 * 1024);
        schedule();
        this.push(buf);
      } catch (err) {
        this.destroy(
          signal.aborted && !(isTierError(err) && err.code !== 'ABORTED')
            ? abortError(signal, key)
            : toTierError(err, { op: 'read', key, tier: p.name }),
        );
      }
    },
    destroy(err, callback) {
      if (!finished) ac.abort();
      hash?.drop();
      cleanup();
      // Parts still pending give their budget back as they settle.
      for (const part of queue.splice(0)) {
        part.promise.then(
          () => p.budget.release(part.length),
          () => {},
        );
      }
      callback(err);
    },
  });
}
