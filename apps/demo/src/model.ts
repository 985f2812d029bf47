/**
 * A synthetic model in safetensors layout: an 8-byte little-endian header
 * length, a JSON header naming each tensor's dtype, shape and byte offsets,
 * then the tensor bytes. The bytes are an AES-CTR keystream: deterministic,
 * incompressible like real weights, and fast to make.
 */
import { createCipheriv, createHash } from 'node:crypto';

const TENSOR_BYTES = 64 * 1024 * 1024;

export interface SyntheticModel {
  readonly size: number;
  readonly header: Uint8Array;
  readonly tensors: number;
}

/** Lays out tensors of F16 weights totalling about `approxBytes`. */
export function planModel(approxBytes: number): SyntheticModel {
  const entries: Record<string, unknown> = {
    __metadata__: { format: 'pt', generator: 'tierkit-demo' },
  };
  let offset = 0;
  let i = 0;
  while (offset < approxBytes) {
    const bytes = Math.min(TENSOR_BYTES, approxBytes - offset);
    const elements = Math.max(1, Math.floor(bytes / 2));
    const cols = 1024;
    const rows = Math.max(1, Math.floor(elements / cols));
    const tensorBytes = elements >= cols ? rows * cols * 2 : elements * 2;
    entries[`model.layers.${i}.weight`] = {
      dtype: 'F16',
      shape: elements >= cols ? [rows, cols] : [elements],
      data_offsets: [offset, offset + tensorBytes],
    };
    offset += tensorBytes;
    i++;
  }
  let json = JSON.stringify(entries);
  // The format pads the header with spaces so tensor data starts 8-byte aligned.
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const body = new TextEncoder().encode(json);
  const header = new Uint8Array(8 + body.byteLength);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.byteLength), true);
  header.set(body, 8);
  return { size: header.byteLength + offset, header, tensors: i };
}

/** Streams the model's bytes in chunks of `chunkSize`. */
export async function* modelBytes(
  model: SyntheticModel,
  chunkSize = 8 * 1024 * 1024,
): AsyncGenerator<Uint8Array> {
  yield model.header;
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16, 0));
  const zeros = Buffer.alloc(chunkSize);
  let left = model.size - model.header.byteLength;
  while (left > 0) {
    const n = Math.min(chunkSize, left);
    yield cipher.update(n === chunkSize ? zeros : zeros.subarray(0, n));
    left -= n;
    // Let the event loop breathe between chunks while an upload drains.
    await new Promise((r) => setImmediate(r));
  }
}

export async function modelSha256(model: SyntheticModel): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of modelBytes(model)) h.update(chunk);
  return h.digest('hex');
}
