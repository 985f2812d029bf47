// Reads what a prebuilt addon needs from the system, straight from its ELF file: the
// machine it was built for, the symbols it imports, and the newest glibc symbol
// version it asks for. The prebuild script uses it to refuse a binary that is for the
// wrong CPU or that links against a Node ABI (V8, libuv, node::) instead of N-API only.
import { readFileSync } from 'node:fs';

const MACHINES = { 62: 'x64', 183: 'arm64' };

/** @param {string} file */
export function inspectElf(file) {
  const b = readFileSync(file);
  if (b.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  if (b[4] !== 2 || b[5] !== 1) throw new Error(`${file} is not a 64-bit little-endian ELF file`);
  const machine = MACHINES[b.readUInt16LE(18)] ?? `e_machine ${b.readUInt16LE(18)}`;
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const sections = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    sections.push({
      type: b.readUInt32LE(o + 4),
      offset: Number(b.readBigUInt64LE(o + 0x18)),
      size: Number(b.readBigUInt64LE(o + 0x20)),
      link: b.readUInt32LE(o + 0x28),
      entsize: Number(b.readBigUInt64LE(o + 0x38)),
    });
  }
  const SHT_DYNSYM = 11;
  const dynsym = sections.find((s) => s.type === SHT_DYNSYM);
  if (!dynsym) throw new Error(`${file} has no dynamic symbol table`);
  const strtab = sections[dynsym.link];
  const name = (off) => {
    const start = strtab.offset + off;
    return b.toString('latin1', start, b.indexOf(0, start));
  };
  const imports = [];
  const exports = [];
  for (let o = dynsym.offset + dynsym.entsize; o < dynsym.offset + dynsym.size; o += dynsym.entsize) {
    const n = name(b.readUInt32LE(o));
    if (!n) continue;
    (b.readUInt16LE(o + 6) === 0 ? imports : exports).push(n);
  }
  // Version requirements live in .gnu.version_r as names in the same string table.
  const strings = b.toString('latin1', strtab.offset, strtab.offset + strtab.size).split('\0');
  const glibc = newest(strings, /^GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$/);
  const glibcxx = newest(strings, /^GLIBCXX_(\d+)\.(\d+)(?:\.(\d+))?$/);
  // Shared libraries it links (DT_NEEDED names share the string table too).
  const needs = strings.filter((s) => /^lib[\w+.-]+\.so(\.\d+)*$/.test(s));
  return {
    machine,
    imports,
    exports,
    needs,
    glibc,
    glibcxx,
  };
}

/** The newest of the version names matching `re` (major.minor[.patch]), e.g. '2.34'. */
function newest(strings, re) {
  const v = strings
    .map((s) => re.exec(s))
    .filter(Boolean)
    .map((m) => [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)])
    .sort((x, y) => x[0] - y[0] || x[1] - y[1] || x[2] - y[2])
    .pop();
  return v ? v.filter((n, i) => i < 2 || n).join('.') : undefined;
}

/**
 * Why this binary is not an N-API addon usable on every Node ≥ 20, or undefined when it is:
 * it must register through napi_register_module_v1 and import nothing from V8, libuv
 * or node:: (those tie a binary to one Node ABI).
 */
export function abiProblem(info) {
  if (!info.exports.includes('napi_register_module_v1')) return 'it does not export napi_register_module_v1';
  const tied = info.imports.filter((s) =>
    /^(_ZN2v8|_ZN4node|_ZNK2v8|_ZNK4node|uv_|node_module_register)/.test(s),
  );
  if (tied.length > 0) return `it imports Node-ABI symbols: ${tied.slice(0, 5).join(', ')}`;
  return undefined;
}
