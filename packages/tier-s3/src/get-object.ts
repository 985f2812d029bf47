/**
 * The two GET paths behind one interface: direct GETs (our own sockets, bodies
 * read straight into the destination; see direct-get.ts) where the endpoint
 * allows, else the SDK's GetObject. Both answer in the SDK's shape, with the
 * same timeouts and signals, so the read path treats them alike.
 */
import { GetObjectCommand, type GetObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import {
  DirectGets,
  type DirectResponse,
  DirectUnsupported,
  type RequestSigner,
  type SignableRequest,
} from './direct-get.js';
import type { ResolvedS3Config } from './options.js';
import { httpsAgentOptions } from './request.js';

/** A GetObject answer: the SDK's, or a direct GET's. */
export type GetAnswer = GetObjectCommandOutput | DirectResponse;

export class ObjectGets {
  readonly #client: S3Client;
  readonly #bucket: string;
  #direct: DirectGets | undefined;

  /** `ownsClient`: an injected client may carry middleware that direct GETs must not bypass. */
  constructor(client: S3Client, c: ResolvedS3Config, ownsClient: boolean) {
    this.#client = client;
    this.#bucket = c.bucket;
    const endpoint = directEndpoint(c);
    if (c.directGets && ownsClient && endpoint) {
      const cfg = client.config;
      this.#direct = tryDirect({
        endpoint,
        bucket: c.bucket,
        virtualHosted: !c.forcePathStyle,
        ...(c.ca ? { ca: httpsAgentOptions(c, {}).ca } : {}),
        signer: sigV4({
          service: 's3',
          region: cfg.region,
          credentials: cfg.credentials,
          sha256: cfg.sha256,
          uriEscapePath: false,
          applyChecksum: false,
        }),
        maxSockets: c.maxSockets,
        idleTimeoutMs: c.idleTimeoutMs,
        connectTimeoutMs: c.connectTimeoutMs,
      });
    }
  }

  /** Whether GETs currently go over direct sockets. */
  get direct(): boolean {
    return this.#direct !== undefined;
  }

  /** One ranged GetObject: direct where possible, else (and from the first answer it cannot take) the SDK. */
  async get(
    key: string,
    range: string,
    ifMatch: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<GetAnswer> {
    const d = this.#direct;
    if (d) {
      try {
        return await d.get(key, range, ifMatch, signal);
      } catch (err) {
        if (!(err instanceof DirectUnsupported)) throw err;
        // Retired, not closed: requests waiting for one of its sockets go to the SDK as well.
        if (this.#direct === d) this.#direct = undefined;
        d.retire();
      }
    }
    return this.#client.send(
      new GetObjectCommand({
        Bucket: this.#bucket,
        Key: key,
        Range: range,
        ...(ifMatch !== undefined ? { IfMatch: ifMatch } : {}),
      }),
      { abortSignal: signal },
    );
  }

  close(): void {
    this.#direct?.close();
  }
}

/**
 * Where direct GETs go: the endpoint, or AWS's regional endpoint when the region
 * is known up front (the SDK resolves anything fancier: FIPS, dual-stack, accelerate).
 */
function directEndpoint(c: ResolvedS3Config): string | undefined {
  if (c.endpoint) return c.endpoint;
  if (!c.region || !/^[a-z0-9-]+$/.test(c.region)) return undefined;
  return `https://s3.${c.region}.amazonaws.com`;
}

/** Direct GETs where this endpoint and addressing allow them; the SDK otherwise. */
function tryDirect(o: ConstructorParameters<typeof DirectGets>[0]): DirectGets | undefined {
  try {
    return new DirectGets(o);
  } catch (err) {
    if (err instanceof DirectUnsupported) return undefined;
    throw err;
  }
}

/** The SDK's SigV4 signer, configured as the S3 client signs (no double-escaped paths). */
function sigV4(init: ConstructorParameters<typeof SignatureV4>[0]): RequestSigner {
  const signer = new SignatureV4(init);
  // sign() is overloaded (strings, events, requests); ours is always a request.
  const signRequest = signer.sign.bind(signer) as (r: SignableRequest) => Promise<SignableRequest>;
  return { sign: signRequest };
}
