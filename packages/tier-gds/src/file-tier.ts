// The file-per-object tier both LMCache layouts plug into lives in @tierkit/lmcache.
export {
  type FileLayout,
  FileTier,
  type FileTierConfig,
  type HeaderInfo,
  type IoEngine,
  nodeEngine,
  tempSuffix,
} from '@tierkit/lmcache';
