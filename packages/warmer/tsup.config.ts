import { defineConfig } from 'tsup';

export default defineConfig([
  {
    // ./progress: the progress bar and number formats the sample apps share with the CLI.
    entry: { index: 'src/index.ts', progress: 'src/progress-bar.ts' },
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
  },
  {
    // The CLI: a small ESM file with a shebang (help, version) that loads the command
    // runner, a second file, only when a command runs. No shared chunks: each stands alone.
    entry: { cli: 'src/cli.ts', 'cli-run': 'src/cli/run.ts' },
    format: ['esm'],
    splitting: false,
    sourcemap: true,
    clean: false,
    target: 'node20',
    banner: { js: '#!/usr/bin/env node' },
  },
]);
