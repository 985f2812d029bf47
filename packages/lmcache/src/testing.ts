/**
 * Test support, for this package and for tier-gds and tier-3fs: the Python
 * reference reader/writer written from LMCache's source and the golden LMCache
 * directories it made. Both live in the repository only (test-fixtures/).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { goldenDir } from './fixtures.js';

export { goldenDir, referenceScript } from './fixtures.js';
export { pythonMissing, runReference } from './reference.js';

/** One entry of test-fixtures/golden/manifest.json. */
export interface GoldenEntry {
  readonly key: string;
  readonly dtype: string;
  readonly shape: number[];
  readonly fmt: number;
  readonly nbytes: number;
  readonly sha256: string;
  /** Relative to the golden directory. */
  readonly path: string;
}

export interface GoldenManifest {
  readonly gds: GoldenEntry[];
  readonly fs_meta: GoldenEntry[];
  readonly fs_nometa: GoldenEntry[];
}

export function goldenManifest(): GoldenManifest {
  return JSON.parse(readFileSync(join(goldenDir(), 'manifest.json'), 'utf8'));
}
