/**
 * Conversions of LMCache configuration values, with LMCache's semantics and a clear
 * error naming the key and what it accepts where LMCache would fail or silently
 * misread (lmcache/v1/config_base.py: env_converter, _to_bool, _parse_quoted_string).
 */
import { lmcacheInvalid } from './errors.js';
import { pyIntParse } from './python.js';

export type ConfigSource = 'default' | 'file' | 'env' | 'override';

function where(key: string, source: ConfigSource): string {
  return source === 'env' ? `LMCACHE_${key.toUpperCase()}` : key;
}

/** Python int() (strings), or an integral number; min/max inclusive. */
export function toInt(v: unknown, key: string, source: ConfigSource, min?: number, max?: number): number {
  let n: number | undefined;
  if (typeof v === 'number' && Number.isInteger(v)) n = v;
  else if (typeof v === 'string') {
    const b = pyIntParse(v);
    if (b !== undefined && b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER))
      n = Number(b);
  }
  const range = min !== undefined || max !== undefined ? `, in [${min ?? '-inf'}, ${max ?? 'inf'}]` : '';
  if (n === undefined) {
    throw lmcacheInvalid(
      `LMCache config ${where(key, source)}: expected an integer (Python int())${range}, got ${JSON.stringify(v)}`,
      {
        key,
        source,
      },
    );
  }
  if ((min !== undefined && n < min) || (max !== undefined && n > max)) {
    throw lmcacheInvalid(`LMCache config ${where(key, source)}: ${n} is out of range${range}`, {
      key,
      source,
    });
  }
  return n;
}

/** Python float(): decimal, exponent, inf/nan words refused (never a sensible size). */
export function toFloat(v: unknown, key: string, source: ConfigSource, min?: number): number {
  let n: number | undefined;
  if (typeof v === 'number' && Number.isFinite(v)) n = v;
  else if (typeof v === 'string' && /^\s*[+-]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?\s*$/.test(v)) {
    n = Number(v.trim().replace(/_/g, ''));
  }
  if (n === undefined || !Number.isFinite(n)) {
    throw lmcacheInvalid(
      `LMCache config ${where(key, source)}: expected a number, got ${JSON.stringify(v)}`,
      { key, source },
    );
  }
  if (min !== undefined && n < min) {
    throw lmcacheInvalid(`LMCache config ${where(key, source)}: ${n} is out of range, in [${min}, inf]`, {
      key,
      source,
    });
  }
  return n;
}

/**
 * A boolean: YAML true/false; from strings, LMCache's _to_bool reads "true" and "1"
 * (any case) as true and anything else as false. tierkit refuses strings other than
 * true/false/1/0 instead: a typo silently turning a feature off is not a value.
 */
export function toBool(v: unknown, key: string, source: ConfigSource): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' && (v === 0 || v === 1)) return v === 1;
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (s === 'true' || s === '1') return true;
    if (s === 'false' || s === '0') return false;
  }
  throw lmcacheInvalid(
    `LMCache config ${where(key, source)}: expected true or false, got ${JSON.stringify(v)}`,
    { key, source },
  );
}

export function toStr(v: unknown, key: string, source: ConfigSource, allowed?: readonly string[]): string {
  if (typeof v !== 'string' && typeof v !== 'number') {
    throw lmcacheInvalid(
      `LMCache config ${where(key, source)}: expected a string, got ${JSON.stringify(v)}`,
      { key, source },
    );
  }
  const s = String(v);
  if (allowed && !allowed.includes(s)) {
    throw lmcacheInvalid(
      `LMCache config ${where(key, source)}: must be one of ${allowed.join(', ')}, got ${JSON.stringify(s)}`,
      {
        key,
        source,
      },
    );
  }
  return s;
}

/** _to_str_list: a YAML list, or a comma-separated string. */
export function toStrList(v: unknown, key: string, source: ConfigSource): string[] {
  if (Array.isArray(v)) {
    if (!v.every((x) => typeof x === 'string')) {
      throw lmcacheInvalid(
        `LMCache config ${where(key, source)}: expected a list of strings, got ${JSON.stringify(v)}`,
        { key, source },
      );
    }
    return v;
  }
  if (typeof v === 'string')
    return v
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
  throw lmcacheInvalid(
    `LMCache config ${where(key, source)}: expected a list or a comma-separated string, got ${JSON.stringify(v)}`,
    {
      key,
      source,
    },
  );
}

/** extra_config: a mapping in YAML, JSON text in LMCACHE_EXTRA_CONFIG. */
export function toDict(v: unknown, key: string, source: ConfigSource): Record<string, unknown> {
  let d = v;
  if (typeof v === 'string') {
    if (v.trim() === '') return {};
    try {
      d = JSON.parse(v);
    } catch (err) {
      throw lmcacheInvalid(
        `LMCache config ${where(key, source)}: not valid JSON: ${(err as Error).message}`,
        { key, source },
      );
    }
  }
  if (d === null || d === undefined) return {};
  if (typeof d !== 'object' || Array.isArray(d)) {
    throw lmcacheInvalid(
      `LMCache config ${where(key, source)}: expected a mapping, got ${JSON.stringify(v)}`,
      { key, source },
    );
  }
  return d as Record<string, unknown>;
}

/** _parse_quoted_string: environment values may be wrapped in one pair of quotes. */
export function unquoteEnv(value: string): string {
  const s = value.trim();
  if (s.length >= 2 && s[0] === s[s.length - 1] && (s[0] === '"' || s[0] === "'")) {
    const inner = s.slice(1, -1);
    return s[0] === '"' ? inner.replace(/\\(["\\])/g, '$1') : inner.replace(/\\(['\\])/g, '$1');
  }
  return s;
}
