/** The shapes of what this package reads: files, tensors, and what loading them cost. */
import type { Encoding } from './dtypes.js';

export type ModelFormat = 'safetensors' | 'gguf';

/** A GGUF metadata value: 64-bit integers are `bigint`, arrays are plain arrays. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** One tensor of a model: where its bytes are and how they are laid out. */
export interface TensorInfo {
  readonly name: string;
  /** The key of the file holding it, in the tier the model was opened from. */
  readonly file: string;
  readonly format: ModelFormat;
  /** The element type as the file names it (`BF16`, `F8_E4M3`, `Q4_K`). */
  readonly dtype: string;
  /**
   * Row-major, outermost dimension first, as numpy and PyTorch see it. GGUF
   * stores dimensions innermost first (`ne`); they are reversed here.
   */
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor's data in its file. */
  readonly offset: number;
  readonly length: number;
  readonly encoding: Encoding;
}

/** One parsed model file. Tensors are in file (offset) order. */
export interface ModelFile {
  readonly key: string;
  readonly format: ModelFormat;
  readonly size: number;
  readonly etag?: string;
  /** Where tensor data begins (after the header and its padding). */
  readonly dataOffset: number;
  /** safetensors `__metadata__` (string → string). */
  readonly metadata: Readonly<Record<string, string>>;
  /** GGUF key/value metadata (empty for safetensors). */
  readonly ggufMetadata: ReadonlyMap<string, GgufValue>;
  /** GGUF version (2 or 3); undefined for safetensors. */
  readonly ggufVersion?: number;
  readonly tensors: readonly TensorInfo[];
}

/** What a model's loads read through the tier, per file and in total. */
export interface LoadStats {
  /** Bytes read through the tier (headers, tensor data and any coalesced gaps). */
  readonly bytesRead: number;
  readonly requests: number;
  /** Tensors delivered to the caller and their bytes (slices count their slice). */
  readonly tensors: number;
  readonly tensorBytes: number;
  readonly files: Readonly<Record<string, { readonly bytesRead: number; readonly requests: number }>>;
}
