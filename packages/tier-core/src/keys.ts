/**
 * Keys are relative, '/'-separated names. Anything that could escape a tier's
 * root or namespace is refused here, before any I/O.
 */
import { TierError } from './errors.js';

/** Longest key accepted, in UTF-8 bytes (S3's limit). */
export const MAX_KEY_BYTES = 1024;
/** Longest path segment accepted, in UTF-8 bytes (NAME_MAX on Linux filesystems). */
export const MAX_SEGMENT_BYTES = 255;

// C0 controls, DEL and C1 controls: never part of a model or chunk name, and
// dangerous in terminals, logs and some filesystems.
// biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** UTF-8 length of a well-formed string, without encoding it (this runs on every operation). */
function utf8Length(s: string, start = 0, end = s.length): number {
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4; // a surrogate pair (well-formedness is checked first)
      i++;
    } else n += 3;
  }
  return n;
}

/** Returns why `key` is not valid, or undefined if it is. */
export function keyProblem(key: unknown): string | undefined {
  if (typeof key !== 'string') return 'a key must be a string';
  if (key.length === 0) return 'a key must not be empty';
  if (CONTROL.test(key)) return 'a key must not contain NUL or control characters';
  if (key.includes('\\')) return 'a key must not contain backslashes';
  if (key.startsWith('/')) return "a key must be relative (no leading '/')";
  if (!key.isWellFormed()) return 'a key must be well-formed Unicode';
  // A UTF-16 unit is at most 3 UTF-8 bytes: short keys need no counting.
  if (key.length * 3 > MAX_KEY_BYTES && utf8Length(key) > MAX_KEY_BYTES) {
    return `a key must be at most ${MAX_KEY_BYTES} bytes`;
  }
  for (let start = 0; ; ) {
    const slash = key.indexOf('/', start);
    const end = slash < 0 ? key.length : slash;
    const n = end - start;
    if (n === 0) return "a key must not contain empty segments ('//' or a trailing '/')";
    if (n <= 2 && key.charCodeAt(start) === 0x2e && (n === 1 || key.charCodeAt(start + 1) === 0x2e)) {
      return `a key must not contain a '${key.slice(start, end)}' segment`;
    }
    if (n * 3 > MAX_SEGMENT_BYTES && utf8Length(key, start, end) > MAX_SEGMENT_BYTES) {
      return `a key segment must be at most ${MAX_SEGMENT_BYTES} bytes`;
    }
    if (slash < 0) return undefined;
    start = slash + 1;
  }
}

export function isValidKey(key: unknown): key is string {
  return keyProblem(key) === undefined;
}

/** Throws `INVALID_KEY` unless `key` is valid. */
export function assertKey(key: unknown, tier?: string): asserts key is string {
  const problem = keyProblem(key);
  if (problem !== undefined) {
    const shown =
      typeof key === 'string' ? JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key) : typeof key;
    throw new TierError('INVALID_KEY', `invalid key ${shown}: ${problem}`, { tier, retryable: false });
  }
}

/**
 * A list prefix may be empty or end in '/', but otherwise follows the key rules
 * (so a prefix can never name something outside the tier either).
 */
export function assertPrefix(prefix: unknown, tier?: string): asserts prefix is string {
  if (prefix === '') return;
  if (typeof prefix !== 'string') {
    throw new TierError('INVALID_KEY', 'a list prefix must be a string', { tier, retryable: false });
  }
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const problem = keyProblem(body);
  if (problem !== undefined) {
    throw new TierError('INVALID_KEY', `invalid prefix ${JSON.stringify(prefix)}: ${problem}`, {
      tier,
      retryable: false,
    });
  }
}

/** Joins a namespace prefix and a key; both must already be valid. */
export function joinKey(prefix: string, key: string): string {
  if (prefix === '') return key;
  return prefix.endsWith('/') ? prefix + key : `${prefix}/${key}`;
}
