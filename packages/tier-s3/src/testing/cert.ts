/**
 * A throwaway TLS certificate for a local https S3 server (tests, benchmarks),
 * made with the `openssl` command line.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCert {
  /** PEM private key. */
  readonly key: string;
  /** PEM certificate: trust it with the tier's `ca` option, or write it out for `AWS_CA_BUNDLE`. */
  readonly cert: string;
}

/**
 * A self-signed P-256 certificate for 127.0.0.1, localhost and *.s3.localhost,
 * valid two days; undefined where `openssl` is missing or fails.
 */
export async function makeTestCert(): Promise<TestCert | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'tierkit-cert-'));
  try {
    const ok = await new Promise<boolean>((resolve) =>
      execFile(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-days',
          '2',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:s3.localhost,DNS:*.s3.localhost',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ],
        (err) => resolve(!err),
      ),
    );
    if (!ok) return undefined;
    return {
      key: await readFile(join(dir, 'key.pem'), 'utf8'),
      cert: await readFile(join(dir, 'cert.pem'), 'utf8'),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
