/**
 * The few Python behaviours LMCache's formats depend on, reproduced exactly:
 * int() parsing, urllib.parse.quote/unquote and json.dumps' default output.
 */
import { lmcacheInvalid } from './errors.js';

const DIGITS_10 = /^[0-9](?:_?[0-9])*$/;
const DIGITS_16 = /^[0-9a-fA-F](?:_?[0-9a-fA-F])*$/;

/**
 * Python's `int(text, base)` for base 10 or 16: surrounding whitespace, one sign,
 * single underscores between digits, and (base 16 only) an optional 0x prefix.
 * Anything else (`"0x100"` in base 10, `"1e2"`, `"12.0"`, `""`) is refused, as Python does.
 * Returns undefined when Python would raise ValueError.
 */
export function pyIntParse(text: string, base: 10 | 16 = 10): bigint | undefined {
  let s = text.trim();
  let negative = false;
  if (s.startsWith('+') || s.startsWith('-')) {
    negative = s[0] === '-';
    s = s.slice(1);
  }
  if (base === 16 && /^0[xX]/.test(s)) {
    s = s.slice(2);
    if (s.startsWith('_')) s = s.slice(1); // int("0x_1f", 16) is valid
  }
  if (!(base === 16 ? DIGITS_16 : DIGITS_10).test(s)) return undefined;
  const v = BigInt((base === 16 ? '0x' : '') + s.replace(/_/g, ''));
  return negative ? -v : v;
}

/** Python's urllib.parse.quote(s, safe=''): all but A-Z a-z 0-9 _ . - ~ become %XX (UTF-8). */
export function pyQuote(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Python's urllib.parse.unquote (UTF-8); an invalid escape is kept as written, as Python does. */
export function pyUnquote(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s.replace(/(?:%[0-9a-fA-F]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
  }
}

function pyString(s: string): string {
  // JSON.stringify escapes like Python for ASCII; ensure_ascii=True escapes the rest as \uXXXX.
  return JSON.stringify(s).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Python's `json.dumps(value)` with default arguments (", " and ": " separators,
 * ensure_ascii) for the values LMCache writes: strings, integers, lists, objects.
 */
export function pyJsonDumps(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return pyString(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw lmcacheInvalid(`json: only integers are written, got ${value}`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(', ')}]`;
  if (typeof value === 'object') {
    const parts = Object.entries(value as Record<string, unknown>).map(
      ([k, v]) => `${pyString(k)}: ${pyJsonDumps(v)}`,
    );
    return `{${parts.join(', ')}}`;
  }
  throw lmcacheInvalid(`json: cannot encode ${typeof value}`);
}
