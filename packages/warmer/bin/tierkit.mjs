#!/usr/bin/env node
// The CLI's entry, loaded by the `tierkit` bin (bin/tierkit.cjs, which sizes libuv's threadpool
// first). A committed file, not dist/cli.js itself: npm links a workspace's bin only if its
// target exists at install time, and dist/ is built after the install.
let cli;
try {
  cli = await import('../dist/cli.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli.js')) {
    process.stderr.write(
      'tierkit: the CLI is not built yet — run `npm run build` in the repository (or `npx turbo run build --filter=@tierkit/warmer...`)\n',
    );
    process.exit(1);
  }
  throw err;
}
cli.run();
