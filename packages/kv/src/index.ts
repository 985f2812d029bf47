export {
  type ChunkHashOptions,
  chunkHashes,
  DEFAULT_CHUNK_SIZE,
  type TokenChunk,
  type TokenIds,
} from './hash.js';
export {
  decodeName,
  encodeName,
  encodeTags,
  type KvKeyParts,
  kvKey,
  kvKeyPrefix,
  kvKeyTail,
  parseKvKey,
} from './keys.js';
export {
  createKvStore,
  type KvChunk,
  type KvContainsOptions,
  type KvGetOptions,
  type KvGetResult,
  type KvPutOptions,
  type KvPutResult,
  type KvStats,
  KvStore,
  type KvStoreOptions,
} from './store.js';
