/**
 * The safetensors header: an 8-byte little-endian length N, N bytes of UTF-8
 * JSON mapping tensor names to `{ dtype, shape, data_offsets }` (offsets
 * relative to the end of the header) plus an optional `__metadata__` of
 * strings, then the data. Validated as strictly as the reference reader:
 * tensors tile the data region exactly (no gap, no overlap, nothing past the
 * end) and every tensor's byte length is what its dtype and shape need.
 */
import { bytesOf, SAFETENSORS_DTYPES } from './dtypes.js';
import { formatError, unsupported } from './errors.js';
import type { ModelFile, TensorInfo } from './types.js';

/** The reference implementation's limit on N; larger headers are refused. */
export const SAFETENSORS_MAX_HEADER = 100_000_000;

/** Reads N from the first 8 bytes, refusing what cannot be a header of this file. */
export function safetensorsHeaderLength(key: string, first8: Uint8Array, size: number, max: number): number {
  if (first8.byteLength < 8 || size < 8) {
    throw formatError('TRUNCATED', key, `a safetensors file has at least 8 bytes; this one has ${size}`);
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(max)) {
    throw formatError('HEADER_TOO_LARGE', key, `header length ${n} exceeds the limit of ${max} bytes`, {
      headerLength: n.toString(),
      max,
    });
  }
  const len = Number(n);
  if (8 + len > size) {
    throw formatError('TRUNCATED', key, `header length ${len} runs past the end of the ${size}-byte file`, {
      headerLength: len,
      size,
    });
  }
  if (len < 2) throw formatError('HEADER_JSON', key, `header length ${len} cannot hold a JSON object`);
  return len;
}

const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Parses and validates the header bytes (the N bytes after the length). */
export function parseSafetensorsHeader(
  key: string,
  header: Uint8Array,
  size: number,
  etag: string | undefined,
): ModelFile {
  let json: unknown;
  try {
    const text = fatal.decode(header);
    // The format starts the JSON with '{' (no BOM, no leading space); padding is trailing spaces.
    if (text[0] !== '{') throw new Error('the header does not start with "{"');
    json = JSON.parse(text);
  } catch (err) {
    throw formatError('HEADER_JSON', key, `the header is not a JSON object: ${(err as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw formatError('HEADER_JSON', key, 'the header is not a JSON object');
  }
  const dataOffset = 8 + header.byteLength;
  const dataSize = size - dataOffset;
  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
        throw formatError('HEADER_SCHEMA', key, '__metadata__ is not an object of strings');
      }
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') {
          throw formatError('HEADER_SCHEMA', key, `__metadata__.${k} is not a string`);
        }
        metadata[k] = v;
      }
      continue;
    }
    tensors.push(tensorEntry(key, name, raw, dataOffset));
  }
  tensors.sort((a, b) => a.offset - b.offset || a.length - b.length);
  // The tensors tile [0, dataSize) exactly, as the reference reader requires.
  let end = dataOffset;
  for (const t of tensors) {
    if (t.offset < end) {
      throw formatError('OVERLAP', key, `tensor '${t.name}' overlaps the tensor before it`, {
        tensor: t.name,
        start: t.offset - dataOffset,
      });
    }
    if (t.offset > end) {
      throw formatError('GAP', key, `unclaimed bytes before tensor '${t.name}'`, {
        tensor: t.name,
        start: t.offset - dataOffset,
      });
    }
    end = t.offset + t.length;
    if (end > size) {
      throw formatError('PAST_END', key, `tensor '${t.name}' ends past the end of the file`, {
        tensor: t.name,
        end: end - dataOffset,
        dataSize,
      });
    }
  }
  if (end !== size) {
    throw formatError('GAP', key, `${size - end} bytes after the last tensor belong to none`, {
      end: end - dataOffset,
      dataSize,
    });
  }
  return {
    key,
    format: 'safetensors',
    size,
    etag,
    dataOffset,
    metadata,
    ggufMetadata: new Map(),
    tensors,
  };
}

function tensorEntry(key: string, name: string, raw: unknown, dataOffset: number): TensorInfo {
  const bad = (what: string) =>
    formatError('HEADER_SCHEMA', key, `tensor '${name}': ${what}`, { tensor: name });
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad('entry is not an object');
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (typeof dtype !== 'string') throw bad('dtype is not a string');
  const encoding = SAFETENSORS_DTYPES.get(dtype);
  if (!encoding)
    throw unsupported(key, `tensor '${name}': unknown dtype '${dtype}'`, { tensor: name, dtype });
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad('shape is not a list of integers ≥ 0');
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[1] < offsets[0]
  ) {
    throw formatError('OFFSETS', key, `tensor '${name}': data_offsets is not [begin, end] with begin ≤ end`, {
      tensor: name,
    });
  }
  let elements = 1;
  for (const d of shape as number[]) {
    elements *= d;
    if (!Number.isSafeInteger(elements)) throw bad('element count overflows');
  }
  const length = offsets[1] - offsets[0];
  const need = bytesOf(encoding, elements);
  if (need !== length) {
    throw formatError(
      'DTYPE_SIZE',
      key,
      `tensor '${name}': ${dtype} ${JSON.stringify(shape)} needs ${need ?? 'a whole number of'} bytes, the offsets give ${length}`,
      { tensor: name, need, length },
    );
  }
  return {
    name,
    file: key,
    format: 'safetensors',
    dtype,
    shape: Object.freeze([...(shape as number[])]),
    offset: dataOffset + offsets[0],
    length,
    encoding,
  };
}
