/**
 * Data types as LMCache names them in three places: the GDS header (safetensors
 * names, gds_backend.py `torch_dtypes`), cache keys (utils.py
 * `TORCH_DTYPE_TO_STR_DTYPE`) and the FS connector's RemoteMetadata (protocol.py
 * `DTYPE_TO_INT`). tierkit speaks the safetensors names.
 */

/** Element sizes of the dtypes the GDS backend can write (its `torch_dtypes`). */
export const TENSOR_DTYPE_BYTES = {
  F16: 2,
  BF16: 2,
  F32: 4,
  F64: 8,
  U8: 1,
  U16: 2,
  U32: 4,
  U64: 8,
  I8: 1,
  I16: 2,
  I32: 4,
  I64: 8,
  F8E4M3FN: 1,
  F8E5M2: 1,
} as const;

export type TensorDtype = keyof typeof TENSOR_DTYPE_BYTES;

export function isTensorDtype(v: unknown): v is TensorDtype {
  return typeof v === 'string' && Object.hasOwn(TENSOR_DTYPE_BYTES, v);
}

/**
 * The dtype field of a cache key, and the tensor dtype it stands for (None where
 * the GDS header cannot express it: bool and the fnuz fp8 variants).
 */
export const KEY_DTYPES = {
  half: 'F16',
  bfloat16: 'BF16',
  float: 'F32',
  double: 'F64',
  int8: 'I8',
  uint8: 'U8',
  int16: 'I16',
  int32: 'I32',
  int64: 'I64',
  bool: undefined,
  fp8_e4m3fn: 'F8E4M3FN',
  fp8_e4m3fnuz: undefined,
  fp8_e5m2: 'F8E5M2',
  fp8_e5m2fnuz: undefined,
} as const satisfies Record<string, TensorDtype | undefined>;

export type KeyDtype = keyof typeof KEY_DTYPES;

export function isKeyDtype(v: unknown): v is KeyDtype {
  return typeof v === 'string' && Object.hasOwn(KEY_DTYPES, v);
}

/**
 * RemoteMetadata's dtype codes. Writing, Python's dict keeps the last entry for a
 * repeated key (torch.half is torch.float16), so F16 is written as 2; reading, 1 and
 * 2 both mean F16. 0 is "no dtype".
 */
export const REMOTE_DTYPE_CODE: Readonly<Partial<Record<TensorDtype, number>>> = {
  F16: 2,
  BF16: 3,
  F32: 4,
  F64: 5,
  U8: 6,
  F8E4M3FN: 7,
  F8E5M2: 8,
};

export const REMOTE_CODE_DTYPE: Readonly<Record<number, TensorDtype | null>> = {
  0: null,
  1: 'F16',
  2: 'F16',
  3: 'BF16',
  4: 'F32',
  5: 'F64',
  6: 'U8',
  7: 'F8E4M3FN',
  8: 'F8E5M2',
};

/**
 * LMCache's MemoryFormat values (memory_management.py): 1 KV_2LTD
 * [2, layers, tokens, hidden], 2 KV_T2D, 3 KV_2TD, 4 BINARY, 5 BINARY_BUFFER,
 * 6 KV_MLA_FMT [1, layers, tokens, hidden], 7 KV_DSA_INDEX_FMT; 0 UNDEFINED.
 */
export const MEMORY_FORMATS = {
  UNDEFINED: 0,
  KV_2LTD: 1,
  KV_T2D: 2,
  KV_2TD: 3,
  BINARY: 4,
  BINARY_BUFFER: 5,
  KV_MLA_FMT: 6,
  KV_DSA_INDEX_FMT: 7,
} as const;

export function isMemoryFormat(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 7;
}

/** Bytes of a tensor of `shape` and `dtype`. */
export function tensorBytes(dtype: TensorDtype, shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, TENSOR_DTYPE_BYTES[dtype]);
}
