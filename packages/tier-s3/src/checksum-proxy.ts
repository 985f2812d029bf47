/**
 * Test helper (not exported): a proxy in front of s3rver that answers as S3
 * does where s3rver cannot — it keeps no checksums and ignores `partNumber`.
 *
 * An honest emulation of S3's behaviour, not a stand-in for the bytes: for an
 * object registered here, a HEAD with `x-amz-checksum-mode: ENABLED` gets the
 * `x-amz-checksum-<algorithm>` and `x-amz-checksum-type` headers S3 would send,
 * computed from the object's real bytes (read back from s3rver by the test), as
 * FULL_OBJECT or as COMPOSITE (`base64-N`: the checksum of the parts'
 * checksums); a HEAD of `partNumber=1` of a registered multipart object gets the
 * part's Content-Length and `x-amz-mp-parts-count`; and (`multipartEtag`)
 * a multipart object's ETag is S3's `"md5(part MD5s)-N"` in every answer —
 * s3rver gives every object the MD5 of its bytes, and ignores If-Match, so the
 * rewritten ETag stays consistent for conditional reads. Everything else passes
 * through untouched (the Host header too, so SigV4 still verifies upstream).
 * It can also flip a byte in the body of the next GETs, as a broken network would.
 * Over TLS when given a certificate.
 */
import { createHash } from 'node:crypto';
import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { crc32 as zlibCrc32 } from 'node:zlib';
import type { DigestAlgorithm } from '@tierkit/tier-core';
import type { TestCert } from './testing/cert.js';

export interface ChecksumRule {
  readonly algorithm: Exclude<DigestAlgorithm, 'md5'>;
  /** COMPOSITE: the checksum of the parts' checksums, `-N`; needs `partSize`. Default FULL_OBJECT. */
  readonly type?: 'FULL_OBJECT' | 'COMPOSITE';
  /** Overrides the computed value (base64, with `-N` for COMPOSITE): what a corrupt store would say. */
  readonly value?: string;
}

export interface ProxiedObject {
  readonly bytes: Uint8Array;
  readonly checksum?: ChecksumRule;
  /** The object was uploaded in parts of this size: HEAD of part 1 says so. */
  readonly partSize?: number;
  /** Answer with S3's multipart ETag (needs `partSize`). */
  readonly multipartEtag?: boolean;
  /** Answer a HEAD of `partNumber=1` as S3 does (default true; false: as s3rver, the whole object). */
  readonly partHeads?: boolean;
}

export interface ChecksumProxy {
  readonly endpoint: string;
  /** Registers `key` (bucket/key, as in the path) with the real bytes s3rver holds. */
  set(path: string, object: ProxiedObject | undefined): void;
  /** Flips one byte in the bodies of the next `n` GETs. */
  flipGets(n: number): void;
  readonly stats: { flips: number; checksumHeads: number; partHeads: number };
  close(): Promise<void>;
}

/**
 * The checksums, written here independently of tier-core's (a plain
 * byte-at-a-time table; node's own for SHA and CRC32), so the check is not
 * the code checking itself.
 */
function table32(poly: number): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}
const T32C = table32(0x82f63b78);
const T64 = (() => {
  const poly = 0x9a6c9329ac4bc9b5n;
  const t: bigint[] = [];
  for (let n = 0; n < 256; n++) {
    let c = BigInt(n);
    for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ poly : c >> 1n;
    t.push(c);
  }
  return t;
})();

function checksumOf(algorithm: ChecksumRule['algorithm'], b: Uint8Array): Buffer {
  switch (algorithm) {
    case 'sha1':
    case 'sha256':
      return createHash(algorithm).update(b).digest();
    case 'crc32': {
      const o = Buffer.alloc(4);
      o.writeUInt32BE(zlibCrc32(b));
      return o;
    }
    case 'crc32c': {
      let c = 0xffffffff;
      for (const x of b) c = (c >>> 8) ^ T32C[(c ^ x) & 0xff]!;
      const o = Buffer.alloc(4);
      o.writeUInt32BE(~c >>> 0);
      return o;
    }
    case 'crc64nvme': {
      // Bytewise over 32-bit halves of the table (BigInt per byte would take seconds per MiB).
      const lo = Uint32Array.from(T64, (v) => Number(v & 0xffffffffn));
      const hi = Uint32Array.from(T64, (v) => Number(v >> 32n));
      let l = 0xffffffff;
      let h = 0xffffffff;
      for (const x of b) {
        const i = (l ^ x) & 0xff;
        l = (((l >>> 8) | (h << 24)) ^ lo[i]!) >>> 0;
        h = ((h >>> 8) ^ hi[i]!) >>> 0;
      }
      const o = Buffer.alloc(8);
      o.writeUInt32BE(~h >>> 0, 0);
      o.writeUInt32BE(~l >>> 0, 4);
      return o;
    }
  }
}

/** S3's ETag of a multipart upload: the MD5 of the parts' MD5s, `-N`. */
function multipartEtag(bytes: Uint8Array, partSize: number): string {
  const md5s: Buffer[] = [];
  for (let i = 0; i < bytes.byteLength; i += partSize) {
    md5s.push(
      createHash('md5')
        .update(bytes.subarray(i, i + partSize))
        .digest(),
    );
  }
  return `"${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${md5s.length}"`;
}

/** The base64 value S3 would state. */
function stated(bytes: Uint8Array, rule: ChecksumRule, partSize: number | undefined): string {
  if (rule.value) return rule.value;
  if (rule.type !== 'COMPOSITE') return checksumOf(rule.algorithm, bytes).toString('base64');
  if (!partSize) throw new Error('a COMPOSITE checksum needs the part size');
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.byteLength; i += partSize)
    parts.push(checksumOf(rule.algorithm, bytes.subarray(i, i + partSize)));
  return `${checksumOf(rule.algorithm, Buffer.concat(parts)).toString('base64')}-${parts.length}`;
}

export async function startChecksumProxy(target: string, tls?: TestCert): Promise<ChecksumProxy> {
  const up = new URL(target);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const objects = new Map<string, ProxiedObject>();
  let flips = 0;
  const stats = { flips: 0, checksumHeads: 0, partHeads: 0 };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname.replace(/^\/+/, ''));
    const object = objects.get(path);
    const head = req.method === 'HEAD';
    const partHead =
      head &&
      object?.partSize !== undefined &&
      object.partHeads !== false &&
      url.searchParams.get('partNumber') === '1';
    const checksumHead =
      head && object?.checksum && String(req.headers['x-amz-checksum-mode']).toUpperCase() === 'ENABLED';
    const flip = req.method === 'GET' && flips > 0;
    if (flip) flips--;
    const out = request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers, agent },
      (upRes) => {
        const headers = { ...upRes.headers };
        if (upRes.statusCode === 200 && object && checksumHead) {
          stats.checksumHeads++;
          const rule = object.checksum!;
          headers[`x-amz-checksum-${rule.algorithm}`] = stated(object.bytes, rule, object.partSize);
          headers['x-amz-checksum-type'] = rule.type ?? 'FULL_OBJECT';
        }
        if (object?.multipartEtag && headers.etag)
          headers.etag = multipartEtag(object.bytes, object.partSize!);
        if (upRes.statusCode === 200 && object && partHead) {
          stats.partHeads++;
          const ps = object.partSize!;
          headers['content-length'] = String(Math.min(ps, object.bytes.byteLength));
          headers['x-amz-mp-parts-count'] = String(Math.max(1, Math.ceil(object.bytes.byteLength / ps)));
        }
        res.writeHead(upRes.statusCode ?? 502, headers);
        let flipped = !flip;
        upRes.on('data', (chunk: Buffer) => {
          if (!flipped && chunk.length > 0) {
            flipped = true;
            stats.flips++;
            chunk = Buffer.from(chunk);
            chunk[chunk.length >> 1]! ^= 0x01;
          }
          res.write(chunk);
        });
        upRes.on('end', () => res.end());
        upRes.on('error', () => res.destroy());
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  };

  const server = tls ? createTlsServer({ key: tls.key, cert: tls.cert }, handle) : createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    set: (path, object) => (object ? objects.set(path, object) : objects.delete(path)),
    flipGets: (n) => {
      flips = n;
    },
    stats,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
