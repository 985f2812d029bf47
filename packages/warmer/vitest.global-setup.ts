import { ensureBuilt } from './src/cli-harness.js';

/** The CLI tests spawn dist/cli.js: build it once, before any test file runs. */
export default async function setup(): Promise<void> {
  await ensureBuilt();
}
