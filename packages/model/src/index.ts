export { type Encoding, GGML_TYPES, ggmlTypeId, SAFETENSORS_DTYPES } from './dtypes.js';
export type { FormatReason } from './errors.js';
export { GGUF_DEFAULT_ALIGNMENT } from './gguf.js';
export type { LoadedTensor, ReadTuning, StreamOptions } from './load.js';
export {
  type LoadOptions,
  Model,
  mergeRanges,
  type OpenModelOptions,
  openModel,
  type RankRangesOptions,
  type ReadTensorOptions,
  rankByteRanges,
} from './model.js';
export type { OpenFileOptions } from './open-file.js';
export { compilePattern, type TensorPattern } from './patterns.js';
export { type PrewarmOptions, prewarmRanges } from './prewarm.js';
export { SAFETENSORS_MAX_HEADER } from './safetensors.js';
export type { SelectOptions, SliceRule } from './select.js';
export { MAX_INDEX_BYTES, parseShardIndex, type ShardIndex } from './shard-index.js';
export { type ByteRun, type SliceSpec, sliceTensor, type TensorPart, wholeTensor } from './slice.js';
export type { ReadEvent } from './stats.js';
export type { GgufValue, LoadStats, ModelFile, ModelFormat, TensorInfo } from './types.js';
export {
  assemble,
  type GgufPlanOptions,
  type GgufScalarType,
  type GgufWriteValue,
  type PlannedFile,
  planGguf,
  planSafetensors,
  type TensorSpec,
} from './writers.js';
