/**
 * How each element type is laid out: `blockElems` elements take `blockBytes`
 * bytes. Plain types are blocks of one element; sub-byte floats pack a few
 * elements into whole bytes; ggml's quantised types store blocks of 32 or 256
 * elements along a row (the innermost dimension).
 */

export interface Encoding {
  /** The type's name as the file spells it (`BF16`, `Q4_K`). */
  readonly name: string;
  readonly blockElems: number;
  readonly blockBytes: number;
  /** True when a block spans several elements of a row (ggml quantised types). */
  readonly quantised: boolean;
}

function enc(name: string, blockElems: number, blockBytes: number, quantised = false): Encoding {
  return Object.freeze({ name, blockElems, blockBytes, quantised });
}

/** Every dtype of the safetensors format, by its name in the header. */
export const SAFETENSORS_DTYPES: ReadonlyMap<string, Encoding> = new Map(
  [
    enc('BOOL', 1, 1),
    // 4-bit and 6-bit floats pack whole elements into bytes (2 per byte, 4 per 3 bytes).
    enc('F4', 2, 1),
    enc('F6_E2M3', 4, 3),
    enc('F6_E3M2', 4, 3),
    enc('U8', 1, 1),
    enc('I8', 1, 1),
    enc('F8_E5M2', 1, 1),
    enc('F8_E4M3', 1, 1),
    enc('F8_E8M0', 1, 1),
    enc('F8_E4M3FNUZ', 1, 1),
    enc('F8_E5M2FNUZ', 1, 1),
    enc('I16', 1, 2),
    enc('U16', 1, 2),
    enc('F16', 1, 2),
    enc('BF16', 1, 2),
    enc('I32', 1, 4),
    enc('U32', 1, 4),
    enc('F32', 1, 4),
    enc('C64', 1, 8),
    enc('F64', 1, 8),
    enc('I64', 1, 8),
    enc('U64', 1, 8),
  ].map((e) => [e.name, e]),
);

const QK_K = 256;

/**
 * ggml's tensor types by their numeric id in GGUF files, with the block
 * sizes and type sizes of ggml's block structures. Ids of removed types
 * (4, 5, 31–33, 36–38) are absent: files using them are refused.
 */
export const GGML_TYPES: ReadonlyMap<number, Encoding> = new Map([
  [0, enc('F32', 1, 4)],
  [1, enc('F16', 1, 2)],
  [2, enc('Q4_0', 32, 18, true)],
  [3, enc('Q4_1', 32, 20, true)],
  [6, enc('Q5_0', 32, 22, true)],
  [7, enc('Q5_1', 32, 24, true)],
  [8, enc('Q8_0', 32, 34, true)],
  [9, enc('Q8_1', 32, 36, true)],
  [10, enc('Q2_K', QK_K, 84, true)],
  [11, enc('Q3_K', QK_K, 110, true)],
  [12, enc('Q4_K', QK_K, 144, true)],
  [13, enc('Q5_K', QK_K, 176, true)],
  [14, enc('Q6_K', QK_K, 210, true)],
  [15, enc('Q8_K', QK_K, 292, true)],
  [16, enc('IQ2_XXS', QK_K, 66, true)],
  [17, enc('IQ2_XS', QK_K, 74, true)],
  [18, enc('IQ3_XXS', QK_K, 98, true)],
  [19, enc('IQ1_S', QK_K, 50, true)],
  [20, enc('IQ4_NL', 32, 18, true)],
  [21, enc('IQ3_S', QK_K, 110, true)],
  [22, enc('IQ2_S', QK_K, 82, true)],
  [23, enc('IQ4_XS', QK_K, 136, true)],
  [24, enc('I8', 1, 1)],
  [25, enc('I16', 1, 2)],
  [26, enc('I32', 1, 4)],
  [27, enc('I64', 1, 8)],
  [28, enc('F64', 1, 8)],
  [29, enc('IQ1_M', QK_K, 56, true)],
  [30, enc('BF16', 1, 2)],
  [34, enc('TQ1_0', QK_K, 54, true)],
  [35, enc('TQ2_0', QK_K, 66, true)],
  [39, enc('MXFP4', 32, 17, true)],
]);

/** The ggml type id of a type name (`Q4_K` → 12), for writers. */
export function ggmlTypeId(name: string): number | undefined {
  for (const [id, e] of GGML_TYPES) if (e.name === name) return id;
  return undefined;
}

/**
 * Bytes taken by `elements` elements of `e`, or undefined when they do not
 * fill whole blocks (a row of a quantised type must be a whole number of blocks).
 * Stays exact past 2^53 by refusing: callers check `Number.isSafeInteger`.
 */
export function bytesOf(e: Encoding, elements: number): number | undefined {
  if (elements % e.blockElems !== 0) return undefined;
  const bytes = (elements / e.blockElems) * e.blockBytes;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
