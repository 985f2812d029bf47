/**
 * Tensor-name patterns: a string is an exact name unless it holds `*` (any
 * run of characters, dots included) or `?` (one character); a RegExp is used
 * as given.
 */
export type TensorPattern = string | RegExp;

export function isGlob(p: TensorPattern): boolean {
  return typeof p !== 'string' || p.includes('*') || p.includes('?');
}

export function compilePattern(p: TensorPattern): (name: string) => boolean {
  if (typeof p !== 'string') {
    // A fresh, non-global RegExp: `test` on a /g one would remember lastIndex between names.
    const re = new RegExp(p.source, p.flags.replace('g', '').replace('y', ''));
    return (name) => re.test(name);
  }
  if (!isGlob(p)) return (name) => name === p;
  const body = p
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  const re = new RegExp(`^${body}$`, 's');
  return (name) => re.test(name);
}
