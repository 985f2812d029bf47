/**
 * Any S3-compatible object store as a tierkit tier.
 */

import type { Readable } from 'node:stream';
import { DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import {
  assertKey,
  assertPrefix,
  keyProblem,
  type ListOptions,
  type ObjectDigest,
  type ObjectMeta,
  type OpOptions,
  type ReadIntoOptions,
  type ReadOptions,
  TIER_SPEC,
  type Tier,
  type TierCapability,
  TierError,
  throwIfAborted,
  type WriteData,
  type WriteOptions,
} from '@tierkit/tier-core';
import { ByteBudget } from './budget.js';
import { isNotFound } from './errors.js';
import { ObjectGets } from './get-object.js';
import { optionsFromUrl, type ResolvedS3Config, resolveOptions, type S3TierOptions } from './options.js';
import { ReadPath } from './read-path.js';
import { clientConfig, RequestSlots, type RetryContext, retry, withoutSdkVersionNotice } from './request.js';
import { partSizeFrom, statedDigests } from './stated-digests.js';
import { type WriteIo, writeObject } from './write-path.js';

const CAPABILITY: TierCapability = Object.freeze({
  write: true,
  delete: true,
  list: true,
  rangeRead: true,
  readInto: true,
  etag: true,
  sourceMeta: false,
  deviceMemory: false,
  persistent: true,
});

/** Hooks for tests: called before each ranged GET after the first of a multi-part read. */
export interface S3TierTestHooks {
  beforePart?: (info: { key: string; offset: number; length: number }) => Promise<void> | void;
  /** A whole-object read is about to be hashed for the tier's own MD5 check. */
  beforeMd5Check?: (info: { key: string; length: number }) => void;
}

export class S3Tier implements Tier {
  readonly spec = TIER_SPEC;
  readonly capability = CAPABILITY;
  readonly name: string;
  /** The resolved, serializable configuration (no client, no secrets). */
  readonly config: ResolvedS3Config;
  readonly client: S3Client;
  /** For tests only. */
  testHooks: S3TierTestHooks = {};
  readonly #ownsClient: boolean;
  readonly #budget: ByteBudget;
  /** The GET paths: direct (`directGets`) where the endpoint allows, else the SDK. */
  readonly #gets: ObjectGets;
  readonly #writeIo: WriteIo;
  readonly #reads: ReadPath;
  #closed = false;

  constructor(options: S3TierOptions) {
    this.config = resolveOptions(options);
    this.name = this.config.name;
    this.#budget = new ByteBudget(this.config.maxBytesInFlight);
    if (options.client) {
      this.client = options.client;
      this.#ownsClient = false;
    } else {
      this.client = withoutSdkVersionNotice(
        () => new S3Client(clientConfig(this.config, options.credentials)),
      );
      this.#ownsClient = true;
    }
    this.#gets = new ObjectGets(this.client, this.config, this.#ownsClient);
    const tier = this;
    this.#reads = new ReadPath({
      config: this.config,
      name: this.name,
      budget: this.#budget,
      slots: new RequestSlots(this.config.maxRequestsInFlight),
      gets: this.#gets,
      get hooks() {
        return tier.testHooks;
      },
      check: (key, signal) => this.#check(key, signal),
      head: (key, signal) => this.#head(key, signal),
    });
    this.#writeIo = {
      client: this.client,
      config: this.config,
      name: this.name,
      check: (key, signal) => this.#check(key, signal),
      head: (key, signal) => this.#head(key, signal),
      ctx: (op, key) => this.#ctx(op, key),
    };
  }

  /** Whether ranged GETs currently go over direct sockets (see `directGets`). */
  get directGets(): boolean {
    return this.#gets.direct;
  }

  // ---------------------------------------------------------------- stat

  async stat(key: string, options?: OpOptions): Promise<ObjectMeta | undefined> {
    this.#check(key, options?.signal);
    return this.#head(key, options?.signal);
  }

  async #head(key: string, signal: AbortSignal | undefined): Promise<ObjectMeta | undefined> {
    const full = this.config.prefix + key;
    return retry(this.#ctx('stat', key), signal, async (_, scope) => {
      try {
        const verify = this.config.verify;
        const r = await this.client.send(
          new HeadObjectCommand({
            Bucket: this.config.bucket,
            Key: full,
            ...(verify ? { ChecksumMode: 'ENABLED' as const } : {}),
          }),
          { abortSignal: scope.signal },
        );
        const digests = verify ? statedDigests(r, this.config.etagDigests) : [];
        return {
          key,
          size: r.ContentLength ?? 0,
          ...(r.ETag ? { etag: r.ETag } : {}),
          ...(r.LastModified ? { lastModified: r.LastModified.getTime() } : {}),
          ...(digests.length > 0 ? { digests } : {}),
        };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  /**
   * Completes a per-part digest (a multipart ETag, a COMPOSITE checksum) with
   * its part size, from a HEAD of part 1 of the version `options.etag` names.
   * Undefined when the server does not say (one that ignores `partNumber`).
   */
  async resolveDigest(
    key: string,
    digest: ObjectDigest,
    options: OpOptions & { readonly size: number; readonly etag?: string },
  ): Promise<ObjectDigest | undefined> {
    if (digest.parts === undefined || digest.partSize) return digest;
    this.#check(key, options.signal);
    const full = this.config.prefix + key;
    const r = await retry(this.#ctx('stat', key), options.signal, async (_, scope) => {
      try {
        return await this.client.send(
          new HeadObjectCommand({
            Bucket: this.config.bucket,
            Key: full,
            PartNumber: 1,
            ...(options.etag ? { IfMatch: options.etag } : {}),
          }),
          { abortSignal: scope.signal },
        );
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
    const partSize = partSizeFrom(r?.ContentLength, r?.PartsCount, digest.parts, options.size);
    return partSize ? { ...digest, partSize } : undefined;
  }

  // ---------------------------------------------------------------- reads

  read(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return this.#reads.read(key, options);
  }

  readInto(key: string, target: Uint8Array, options?: ReadIntoOptions): Promise<number | undefined> {
    return this.#reads.readInto(key, target, options);
  }

  readStream(key: string, options?: ReadOptions): Promise<Readable | undefined> {
    return this.#reads.readStream(key, options);
  }

  // ---------------------------------------------------------------- writes

  write(key: string, data: WriteData, options?: WriteOptions): Promise<ObjectMeta> {
    return writeObject(this.#writeIo, key, data, options);
  }

  // ---------------------------------------------------------------- delete / list

  async delete(key: string, options?: OpOptions): Promise<void> {
    const signal = options?.signal;
    this.#check(key, signal);
    await retry(this.#ctx('delete', key), signal, async (_, scope) => {
      try {
        await this.client.send(
          new DeleteObjectCommand({ Bucket: this.config.bucket, Key: this.config.prefix + key }),
          {
            abortSignal: scope.signal,
          },
        );
      } catch (err) {
        if (isNotFound(err)) return;
        throw err;
      }
    });
  }

  async *list(prefix = '', options?: ListOptions): AsyncIterable<ObjectMeta> {
    const signal = options?.signal;
    assertPrefix(prefix, this.name);
    this.#open();
    throwIfAborted(signal);
    const strip = this.config.prefix.length;
    // Paging by StartAfter (the last key seen) rather than continuation tokens:
    // every S3-compatible store supports it (s3rver's tokens need DES, gone in OpenSSL 3).
    let after: string | undefined;
    for (;;) {
      const page = await retry(this.#ctx('list', undefined), signal, (_, scope) =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: this.config.prefix + prefix,
            MaxKeys: this.config.listPageSize,
            ...(after !== undefined ? { StartAfter: after } : {}),
          }),
          { abortSignal: scope.signal },
        ),
      );
      for (const o of page.Contents ?? []) {
        throwIfAborted(signal);
        if (!o.Key) continue;
        const key = o.Key.slice(strip);
        // Objects other tools made under names tierkit cannot address (folder markers, '//').
        if (keyProblem(key) !== undefined) continue;
        yield {
          key,
          size: o.Size ?? 0,
          ...(o.ETag ? { etag: o.ETag } : {}),
          ...(o.LastModified ? { lastModified: o.LastModified.getTime() } : {}),
        };
      }
      const last = page.Contents?.at(-1)?.Key;
      if (!page.IsTruncated || last === undefined || last === after) return;
      after = last;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#gets.close();
    if (this.#ownsClient) this.client.destroy();
  }

  // ---------------------------------------------------------------- helpers

  #check(key: string, signal: AbortSignal | undefined): void {
    assertKey(key, this.name);
    this.#open();
    throwIfAborted(signal, key);
  }

  #open(): void {
    if (this.#closed) throw new TierError('CLOSED', `tier '${this.name}' is closed`, { retryable: false });
  }

  #ctx(op: string, key: string | undefined): RetryContext {
    return { op, key, tier: this.name, config: this.config };
  }
}

export function createS3Tier(options: S3TierOptions): S3Tier {
  return new S3Tier(options);
}

/** `s3://bucket/prefix?region=…&endpoint=…`; `extra` (e.g. `{ client }`) wins over the URL. */
export function s3TierFromUrl(url: string | URL, extra?: Partial<S3TierOptions>): S3Tier {
  return new S3Tier(optionsFromUrl(url, extra));
}
