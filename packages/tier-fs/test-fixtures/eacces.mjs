// Run as an unprivileged user against a root it cannot write: prints the error.
import { FsTier } from '../dist/index.js';

const tier = new FsTier({ root: process.argv[2], create: false });
try {
  await tier.write('ro/new', new Uint8Array(3));
  process.stdout.write('{"code":"none"}\n');
} catch (err) {
  process.stdout.write(
    `${JSON.stringify({ code: err.code, retryable: err.retryable, message: err.message })}\n`,
  );
}
