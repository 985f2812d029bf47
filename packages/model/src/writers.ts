/**
 * Writers for both formats, for tools and tests that make model files:
 * plan the layout (header bytes and each tensor's offset), then write the
 * header followed by each tensor's bytes in order.
 */
import { bytesOf, GGML_TYPES, ggmlTypeId, SAFETENSORS_DTYPES } from './dtypes.js';
import { invalidArgument } from './errors.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC } from './gguf.js';

export interface TensorSpec {
  readonly name: string;
  /** A safetensors dtype (`BF16`) or, for GGUF, a ggml type name (`Q4_K`). */
  readonly dtype: string;
  /** Row-major, outermost first (for GGUF too). */
  readonly shape: readonly number[];
}

export interface PlannedFile {
  /** Everything before the first tensor's bytes (padding included). */
  readonly header: Uint8Array;
  /** Absolute offsets, in the order given; tensor bytes follow each other (GGUF: aligned). */
  readonly tensors: readonly { readonly name: string; readonly offset: number; readonly length: number }[];
  readonly size: number;
}

function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function planSafetensors(
  specs: readonly TensorSpec[],
  metadata?: Readonly<Record<string, string>>,
): PlannedFile {
  const entries: Record<string, unknown> = {};
  if (metadata) entries.__metadata__ = metadata;
  let at = 0;
  const laid: { name: string; offset: number; length: number }[] = [];
  for (const s of specs) {
    const e = SAFETENSORS_DTYPES.get(s.dtype);
    if (!e) throw invalidArgument(`unknown safetensors dtype '${s.dtype}'`);
    const length = bytesOf(e, elements(s.shape));
    if (length === undefined) throw invalidArgument(`${s.dtype} [${s.shape}] is not a whole number of bytes`);
    entries[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [at, at + length] };
    laid.push({ name: s.name, offset: at, length });
    at += length;
  }
  let json = JSON.stringify(entries);
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const body = new TextEncoder().encode(json);
  const header = new Uint8Array(8 + body.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.byteLength), true);
  header.set(body, 8);
  return {
    header,
    tensors: laid.map((t) => ({ ...t, offset: t.offset + header.byteLength })),
    size: header.byteLength + at,
  };
}

/** A GGUF metadata value with its type; plain values are typed as string, bool, u64 (bigint), u32 or f32. */
export type GgufWriteValue =
  | string
  | boolean
  | bigint
  | number
  | { readonly type: GgufScalarType; readonly value: number | bigint | boolean | string }
  | { readonly type: 'array'; readonly elementType: GgufScalarType; readonly value: readonly unknown[] };

export type GgufScalarType =
  | 'u8'
  | 'i8'
  | 'u16'
  | 'i16'
  | 'u32'
  | 'i32'
  | 'f32'
  | 'bool'
  | 'string'
  | 'u64'
  | 'i64'
  | 'f64';

const TYPE_IDS: Record<GgufScalarType | 'array', number> = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
};

class Out {
  chunks: Uint8Array[] = [];
  size = 0;
  push(b: Uint8Array) {
    this.chunks.push(b);
    this.size += b.byteLength;
  }
  num(bytes: number, set: (v: DataView) => void) {
    const b = new Uint8Array(bytes);
    set(new DataView(b.buffer));
    this.push(b);
  }
  u32(v: number) {
    this.num(4, (d) => d.setUint32(0, v, true));
  }
  u64(v: number | bigint) {
    this.num(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(b.byteLength);
    this.push(b);
  }
  scalar(type: GgufScalarType, v: unknown) {
    switch (type) {
      case 'u8':
        return this.num(1, (d) => d.setUint8(0, Number(v)));
      case 'i8':
        return this.num(1, (d) => d.setInt8(0, Number(v)));
      case 'u16':
        return this.num(2, (d) => d.setUint16(0, Number(v), true));
      case 'i16':
        return this.num(2, (d) => d.setInt16(0, Number(v), true));
      case 'u32':
        return this.u32(Number(v));
      case 'i32':
        return this.num(4, (d) => d.setInt32(0, Number(v), true));
      case 'f32':
        return this.num(4, (d) => d.setFloat32(0, Number(v), true));
      case 'bool':
        return this.num(1, (d) => d.setUint8(0, v ? 1 : 0));
      case 'string':
        return this.str(String(v));
      case 'u64':
        return this.u64(BigInt(v as bigint));
      case 'i64':
        return this.num(8, (d) => d.setBigInt64(0, BigInt(v as bigint), true));
      case 'f64':
        return this.num(8, (d) => d.setFloat64(0, Number(v), true));
    }
  }
}

function typed(v: GgufWriteValue): {
  type: GgufScalarType | 'array';
  value: unknown;
  elementType?: GgufScalarType;
} {
  if (typeof v === 'string') return { type: 'string', value: v };
  if (typeof v === 'boolean') return { type: 'bool', value: v };
  if (typeof v === 'bigint') return { type: 'u64', value: v };
  if (typeof v === 'number') {
    return { type: Number.isInteger(v) && v >= 0 && v < 2 ** 32 ? 'u32' : 'f32', value: v };
  }
  return v;
}

export interface GgufPlanOptions {
  readonly version?: 2 | 3;
  readonly metadata?: Readonly<Record<string, GgufWriteValue>>;
  /** Written as `general.alignment` when not 32. */
  readonly alignment?: number;
}

/** Lays out a GGUF file; `specs[].dtype` is a ggml type name. */
export function planGguf(specs: readonly TensorSpec[], options: GgufPlanOptions = {}): PlannedFile {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const meta: Record<string, GgufWriteValue> = { ...options.metadata };
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) meta['general.alignment'] = { type: 'u32', value: alignment };
  const o = new Out();
  o.u32(GGUF_MAGIC);
  o.u32(options.version ?? 3);
  o.u64(specs.length);
  o.u64(Object.keys(meta).length);
  for (const [k, raw] of Object.entries(meta)) {
    o.str(k);
    const v = typed(raw);
    o.u32(TYPE_IDS[v.type]);
    if (v.type === 'array') {
      const items = v.value as readonly unknown[];
      o.u32(TYPE_IDS[v.elementType!]);
      o.u64(items.length);
      for (const item of items) o.scalar(v.elementType!, item);
    } else o.scalar(v.type, v.value);
  }
  const rel: { name: string; offset: number; length: number }[] = [];
  let at = 0;
  for (const s of specs) {
    const id = ggmlTypeId(s.dtype);
    if (id === undefined) throw invalidArgument(`unknown ggml type '${s.dtype}'`);
    const e = GGML_TYPES.get(id)!;
    const length = bytesOf(e, elements(s.shape));
    if (length === undefined || (s.shape.at(-1) ?? 1) % e.blockElems !== 0) {
      throw invalidArgument(`${s.dtype} [${s.shape}]: rows are not whole blocks of ${e.blockElems}`);
    }
    o.str(s.name);
    o.u32(s.shape.length);
    for (const d of [...s.shape].reverse()) o.u64(d);
    o.u32(id);
    o.u64(at);
    rel.push({ name: s.name, offset: at, length });
    at = Math.ceil((at + length) / alignment) * alignment;
  }
  const dataOffset = Math.ceil(o.size / alignment) * alignment;
  o.push(new Uint8Array(dataOffset - o.size));
  const header = new Uint8Array(o.size);
  let p = 0;
  for (const c of o.chunks) {
    header.set(c, p);
    p += c.byteLength;
  }
  const last = rel.at(-1);
  return {
    header,
    tensors: rel.map((t) => ({ ...t, offset: t.offset + dataOffset })),
    size: dataOffset + (last ? last.offset + last.length : 0),
  };
}

/**
 * Assembles a whole file in memory from a plan and each tensor's bytes
 * (GGUF's alignment padding is zeros). For small files: tests, fixtures.
 */
export function assemble(plan: PlannedFile, data: (name: string, length: number) => Uint8Array): Uint8Array {
  const out = new Uint8Array(plan.size);
  out.set(plan.header);
  for (const t of plan.tensors) {
    const bytes = data(t.name, t.length);
    if (bytes.byteLength !== t.length) throw invalidArgument(`tensor '${t.name}' needs ${t.length} bytes`);
    out.set(bytes, t.offset);
  }
  return out;
}
