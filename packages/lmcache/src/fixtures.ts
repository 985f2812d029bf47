/**
 * Where the reference reader/writer (test-fixtures/lmcache_ref.py, written from
 * LMCache's source) and the golden LMCache directories it made live, for the
 * tests of this package and of tier-gds and tier-3fs. Present in the repository,
 * not in the published package.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageDir(): string {
  // src/ or dist/ → the package folder
  return dirname(dirname(fileURLToPath(import.meta.url)));
}

export function goldenDir(): string {
  return join(packageDir(), 'test-fixtures', 'golden');
}

export function referenceScript(): string {
  return join(packageDir(), 'test-fixtures', 'lmcache_ref.py');
}
