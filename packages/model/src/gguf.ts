/**
 * GGUF (versions 2 and 3, little-endian): magic `GGUF`, version, tensor and
 * key/value counts, the key/values, the tensor infos (name, dimensions
 * innermost first, ggml type, offset), padding to `general.alignment`
 * (default 32), then the data. Parsed through a growing window of ranged
 * reads; every count and length is checked against what is left of the file
 * before anything is allocated for it.
 */
import { bytesOf, GGML_TYPES } from './dtypes.js';
import { formatError, unsupported } from './errors.js';
import type { HeaderWindow } from './source.js';
import type { GgufValue, ModelFile, TensorInfo } from './types.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS and GGML_MAX_NAME (which counts the terminating NUL). */
const MAX_DIMS = 4;
const MAX_NAME_BYTES = 63;
const MAX_ARRAY_DEPTH = 4;

/** Value type ids of GGUF metadata. */
const T = {
  U8: 0,
  I8: 1,
  U16: 2,
  I16: 3,
  U32: 4,
  I32: 5,
  F32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  U64: 10,
  I64: 11,
  F64: 12,
} as const;

/** Smallest encoded size of one value of each type (strings: their length prefix). */
const MIN_SIZE = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

const lenient = new TextDecoder('utf-8');
const strict = new TextDecoder('utf-8', { fatal: true });

class Cursor {
  pos = 0;
  constructor(readonly w: HeaderWindow) {}

  get key(): string {
    return this.w.key;
  }

  /** Bytes of the file left after the cursor. */
  get left(): number {
    return this.w.size - this.pos;
  }

  /** Bytes the header may still take: the rest of the file, at most up to the header cap. */
  get room(): number {
    return Math.min(this.w.size, this.w.maxBytes) - this.pos;
  }

  async need(n: number): Promise<void> {
    if (this.pos + n > this.w.loaded) await this.w.ensure(this.pos + n);
  }

  async u32(): Promise<number> {
    await this.need(4);
    const v = this.w.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A u64 that must be a safe integer (a length or count); larger is refused as `what`. */
  async count(what: string): Promise<number> {
    await this.need(8);
    const v = this.w.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw formatError('BAD_VALUE', this.key, `${what} ${v} is beyond any file`, { at: this.pos - 8 });
    }
    return Number(v);
  }

  /** A length-prefixed string, its length checked against the rest of the file first. */
  async string(what: string, decoder = lenient): Promise<string> {
    const len = await this.count(`${what} length`);
    if (len > this.left) {
      throw formatError('TRUNCATED', this.key, `${what} of ${len} bytes runs past the end of the file`, {
        at: this.pos,
        length: len,
      });
    }
    await this.need(len);
    const bytes = this.w.bytes.subarray(this.pos, this.pos + len);
    this.pos += len;
    try {
      return decoder.decode(bytes);
    } catch {
      throw formatError('BAD_VALUE', this.key, `${what} is not valid UTF-8`, { at: this.pos - len });
    }
  }

  async value(type: number, what: string, depth = 0): Promise<GgufValue> {
    const v = this.w.view;
    const scalar = MIN_SIZE[type];
    if (type !== T.STRING && type !== T.ARRAY && scalar !== undefined) await this.need(scalar);
    const at = this.pos;
    switch (type) {
      case T.U8:
        this.pos += 1;
        return v.getUint8(at);
      case T.I8:
        this.pos += 1;
        return v.getInt8(at);
      case T.U16:
        this.pos += 2;
        return v.getUint16(at, true);
      case T.I16:
        this.pos += 2;
        return v.getInt16(at, true);
      case T.U32:
        this.pos += 4;
        return v.getUint32(at, true);
      case T.I32:
        this.pos += 4;
        return v.getInt32(at, true);
      case T.F32:
        this.pos += 4;
        return v.getFloat32(at, true);
      case T.U64:
        this.pos += 8;
        return v.getBigUint64(at, true);
      case T.I64:
        this.pos += 8;
        return v.getBigInt64(at, true);
      case T.F64:
        this.pos += 8;
        return v.getFloat64(at, true);
      case T.BOOL: {
        this.pos += 1;
        const b = v.getUint8(at);
        if (b > 1)
          throw formatError('BAD_VALUE', this.key, `${what}: bool byte ${b} is neither 0 nor 1`, { at });
        return b === 1;
      }
      case T.STRING:
        return this.string(what);
      case T.ARRAY: {
        if (depth >= MAX_ARRAY_DEPTH)
          throw unsupported(this.key, `${what}: arrays nested deeper than ${depth}`);
        const elem = await this.u32();
        const min = MIN_SIZE[elem];
        if (min === undefined) throw unsupported(this.key, `${what}: unknown array element type ${elem}`);
        const n = await this.count(`${what} array length`);
        // Refuse before allocating: n elements need at least n × min bytes of the header,
        // which ends at the file's end or at the header cap, whichever comes first.
        if (n * min > this.left) {
          throw formatError('TRUNCATED', this.key, `${what}: ${n} array elements cannot fit in the file`, {
            at: this.pos,
            n,
          });
        }
        if (n * min > this.room) {
          throw formatError(
            'HEADER_TOO_LARGE',
            this.key,
            `${what}: ${n} array elements would take the header past ${this.w.maxBytes} bytes`,
            { at: this.pos, n, maxBytes: this.w.maxBytes },
          );
        }
        const out: GgufValue[] = [];
        for (let i = 0; i < n; i++) out.push(await this.value(elem, what, depth + 1));
        return out;
      }
      default:
        throw unsupported(this.key, `${what}: unknown value type ${type}`, { type });
    }
  }
}

/** Parses a GGUF header whose first bytes are in `w`. */
export async function parseGguf(w: HeaderWindow, etag: string | undefined): Promise<ModelFile> {
  const key = w.key;
  const c = new Cursor(w);
  if ((await c.u32()) !== GGUF_MAGIC) throw formatError('BAD_MAGIC', key, 'not a GGUF file');
  const version = await c.u32();
  if (version !== 2 && version !== 3) {
    const swapped =
      (((version & 0xff) << 24) |
        ((version & 0xff00) << 8) |
        ((version >>> 8) & 0xff00) |
        (version >>> 24)) >>>
      0;
    const hint = swapped === 2 || swapped === 3 ? ' (a big-endian file)' : '';
    throw unsupported(key, `GGUF version ${version}${hint}: versions 2 and 3 (little-endian) are read`, {
      version,
    });
  }
  const tensorCount = await c.count('tensor count');
  const kvCount = await c.count('metadata count');
  // Each key/value takes ≥ 13 bytes and each tensor info ≥ 24: refuse counts the file cannot hold.
  if (kvCount * 13 + tensorCount * 24 > c.left) {
    throw formatError('TRUNCATED', key, `${tensorCount} tensors and ${kvCount} metadata entries cannot fit`, {
      tensorCount,
      kvCount,
    });
  }
  const meta = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const k = await c.string('metadata key', strict);
    if (meta.has(k)) throw formatError('DUPLICATE', key, `metadata key '${k}' appears twice`, { name: k });
    const type = await c.u32();
    meta.set(k, await c.value(type, `metadata '${k}'`));
  }
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const a = meta.get('general.alignment');
  if (a !== undefined) {
    if (typeof a !== 'number' || !Number.isInteger(a) || a < 1 || (a & (a - 1)) !== 0) {
      throw formatError('ALIGNMENT', key, `general.alignment ${String(a)} is not a power of two`);
    }
    alignment = a;
  }

  interface Raw {
    name: string;
    ne: number[];
    type: number;
    offset: number;
  }
  const raws: Raw[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const name = await c.string('tensor name', strict);
    if (new TextEncoder().encode(name).byteLength > MAX_NAME_BYTES) {
      throw formatError('BAD_VALUE', key, `tensor name '${name.slice(0, 80)}…' is longer than 63 bytes`);
    }
    if (names.has(name))
      throw formatError('DUPLICATE', key, `tensor '${name}' appears twice`, { tensor: name });
    names.add(name);
    const nDims = await c.u32();
    if (nDims > MAX_DIMS) {
      throw formatError(
        'BAD_VALUE',
        key,
        `tensor '${name}' has ${nDims} dimensions; ggml allows ${MAX_DIMS}`,
      );
    }
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(await c.count(`tensor '${name}' dimension`));
    raws.push({ name, ne, type: await c.u32(), offset: await c.count(`tensor '${name}' offset`) });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  if (dataOffset > w.size && tensorCount > 0)
    throw formatError('TRUNCATED', key, 'the file ends inside the header padding');

  const tensors: TensorInfo[] = raws.map((r) => {
    const encoding = GGML_TYPES.get(r.type);
    if (!encoding) {
      throw unsupported(key, `tensor '${r.name}': unknown or removed ggml type ${r.type}`, {
        tensor: r.name,
        type: r.type,
      });
    }
    let elements = 1;
    for (const n of r.ne) {
      elements *= n;
      if (!Number.isSafeInteger(elements)) {
        throw formatError('BAD_VALUE', key, `tensor '${r.name}': element count overflows`, {
          tensor: r.name,
        });
      }
    }
    const inner = r.ne[0] ?? 1;
    const length = bytesOf(encoding, elements);
    if (inner % encoding.blockElems !== 0 || length === undefined) {
      throw formatError(
        'DTYPE_SIZE',
        key,
        `tensor '${r.name}': rows of ${inner} ${encoding.name} elements are not whole blocks of ${encoding.blockElems}`,
        { tensor: r.name },
      );
    }
    if (r.offset % alignment !== 0) {
      throw formatError(
        'ALIGNMENT',
        key,
        `tensor '${r.name}': offset ${r.offset} is not a multiple of ${alignment}`,
        {
          tensor: r.name,
        },
      );
    }
    const offset = dataOffset + r.offset;
    if (!Number.isSafeInteger(offset + length) || offset + length > w.size) {
      throw formatError('PAST_END', key, `tensor '${r.name}' ends past the end of the file`, {
        tensor: r.name,
        end: offset + length,
        size: w.size,
      });
    }
    return {
      name: r.name,
      file: key,
      format: 'gguf' as const,
      dtype: encoding.name,
      shape: Object.freeze([...r.ne].reverse()),
      offset,
      length,
      encoding,
    };
  });
  tensors.sort((x, y) => x.offset - y.offset || x.length - y.length);
  let end = dataOffset;
  for (const t of tensors) {
    if (t.offset < end) {
      throw formatError('OVERLAP', key, `tensor '${t.name}' overlaps the tensor before it`, {
        tensor: t.name,
      });
    }
    end = t.offset + t.length;
  }
  return {
    key,
    format: 'gguf',
    size: w.size,
    etag,
    dataOffset,
    metadata: {},
    ggufMetadata: meta,
    ggufVersion: version,
    tensors,
  };
}
