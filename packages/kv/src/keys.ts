/**
 * KV chunk identities (model, world size, worker id, chunk hash, tags) and the
 * tier keys they map to:
 *
 *   <namespace>/<model>/ws<worldSize>-w<workerId>[/<tags>]/<hash[0:2]>/<hash>
 *
 * Names are percent-encoded so that any model name ('meta-llama/Llama-3.1-8B',
 * '../x', 'a b', unicode) becomes exactly one safe path segment, and the mapping
 * is one-to-one: two different identities never share a tier key.
 */
import { createHash } from 'node:crypto';
import { assertKey, keyProblem, TierError } from '@tierkit/tier-core';

export interface KvKeyParts {
  readonly model: string;
  readonly worldSize: number;
  readonly workerId: number;
  /** The chunk hash, 64 lowercase hex digits (see `chunkHashes`). */
  readonly hash: string;
  /** Extra identity (a LoRA id, a dtype, LMCache's request tags); order does not matter. */
  readonly tags?: Readonly<Record<string, string>>;
}

// Longer encoded names are shortened with a digest so a segment stays within
// NAME_MAX (255) with room for the rest of the key.
const MAX_NAME_BYTES = 200;
const HASH_RE = /^[0-9a-f]{64}$/;

function invalid(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', message, { retryable: false });
}

/**
 * One path segment for `name`: A–Z a–z 0–9 '_' '-' '.' stay, every other UTF-8
 * byte (and a leading '.', so no '.', '..' or hidden '.tierkit' segment can
 * appear) becomes %XX. '%' itself is always encoded, so decoding is exact.
 */
export function encodeName(name: string): string {
  if (typeof name !== 'string' || name.length === 0)
    throw invalid('a model name or tag must be a non-empty string');
  if (!name.isWellFormed()) throw invalid(`${JSON.stringify(name)} is not well-formed Unicode`);
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    const plain = /[A-Za-z0-9_-]/.test(c) || (c === '.' && out.length > 0);
    out += plain ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (out.length <= MAX_NAME_BYTES) return out;
  // '~' never appears in an encoded name, so a shortened one cannot equal a plain one.
  const digest = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 32);
  return `${out.slice(0, MAX_NAME_BYTES - 33)}~${digest}`;
}

/** Inverse of `encodeName` (undefined for a shortened name, which cannot be reversed). */
export function decodeName(segment: string): string | undefined {
  if (segment.includes('~')) return undefined;
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw invalid(`${name} must be an integer ≥ ${min}, got ${v}`);
}

/** The tag segment: sorted `name=value` pairs joined by ','; undefined without tags. */
export function encodeTags(tags: Readonly<Record<string, string>> | undefined): string | undefined {
  if (!tags) return undefined;
  const names = Object.keys(tags).sort();
  if (names.length === 0) return undefined;
  const seg = names
    .map((k) => {
      const v = tags[k];
      if (typeof v !== 'string') throw invalid(`tag ${JSON.stringify(k)} must have a string value`);
      return `${encodeName(k)}=${v === '' ? '' : encodeName(v)}`;
    })
    .join(',');
  const problem = keyProblem(seg);
  if (problem !== undefined) throw invalid(`tags too long for one key segment: ${problem}`);
  return seg;
}

/** The tier key of one chunk, under `namespace` (default 'kv'). */
export function kvKey(parts: KvKeyParts, namespace = 'kv'): string {
  return kvKeyPrefix(parts, namespace) + kvKeyTail(parts.hash);
}

/** Everything of a chunk's key before its hash, ending in '/'. */
export function kvKeyPrefix(parts: Omit<KvKeyParts, 'hash'>, namespace = 'kv'): string {
  assertKey(namespace);
  checkInt('worldSize', parts.worldSize, 1);
  checkInt('workerId', parts.workerId, 0);
  if (parts.workerId >= parts.worldSize) {
    throw invalid(`workerId ${parts.workerId} must be below worldSize ${parts.worldSize}`);
  }
  const tags = encodeTags(parts.tags);
  const ws = `ws${parts.worldSize}-w${parts.workerId}`;
  return `${namespace}/${encodeName(parts.model)}/${ws}/${tags === undefined ? '' : `${tags}/`}`;
}

/** The last two segments of a chunk key: fan-out by the hash's first byte (256 folders), then the hash. */
export function kvKeyTail(hash: string): string {
  if (typeof hash !== 'string' || !HASH_RE.test(hash)) {
    throw invalid(`a chunk hash is 64 lowercase hex digits, got ${JSON.stringify(hash)}`);
  }
  return `${hash.slice(0, 2)}/${hash}`;
}

/** The parts of a key made by `kvKey`; undefined for any other key (or a shortened model name). */
export function parseKvKey(key: string, namespace = 'kv'): KvKeyParts | undefined {
  if (!key.startsWith(`${namespace}/`)) return undefined;
  const segs = key.slice(namespace.length + 1).split('/');
  if (segs.length !== 4 && segs.length !== 5) return undefined;
  const [modelSeg, wsSeg] = segs;
  const hash = segs[segs.length - 1]!;
  if (!HASH_RE.test(hash) || segs[segs.length - 2] !== hash.slice(0, 2)) return undefined;
  const m = /^ws([1-9][0-9]*)-w(0|[1-9][0-9]*)$/.exec(wsSeg!);
  const model = decodeName(modelSeg!);
  if (!m || model === undefined) return undefined;
  let tags: Record<string, string> | undefined;
  if (segs.length === 5) {
    tags = {};
    for (const pair of segs[2]!.split(',')) {
      const eq = pair.indexOf('=');
      const name = eq > 0 ? decodeName(pair.slice(0, eq)) : undefined;
      const value = eq > 0 ? (eq === pair.length - 1 ? '' : decodeName(pair.slice(eq + 1))) : undefined;
      if (name === undefined || value === undefined) return undefined;
      tags[name] = value;
    }
  }
  return { model, worldSize: Number(m[1]), workerId: Number(m[2]), hash, ...(tags ? { tags } : {}) };
}
