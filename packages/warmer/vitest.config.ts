import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // CLI tests spawn a dozen fresh processes each; on a busy 2-core machine that takes tens of seconds.
    testTimeout: 120_000,
    globalSetup: ['./vitest.global-setup.ts'],
  },
});
