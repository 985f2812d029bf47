// Its own file: the SDK says its notice once per process, so no other test may build a client first.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { createS3Tier } from './index.js';

const NOTICE = 'NodeVersionSupportWarning';
const major = Number(process.versions.node.split('.')[0]);

describe("the AWS SDK's notice about future Node versions", () => {
  it.skipIf(major >= 22)(
    'is printed by a plain SDK client on this Node (the control: what the tier must not do)',
    () => {
      const sdk = createRequire(import.meta.url).resolve('@aws-sdk/client-s3');
      const r = spawnSync(
        process.execPath,
        ['-e', `new (require(${JSON.stringify(sdk)}).S3Client)({ region: 'us-east-1' })`],
        { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } },
      );
      expect(r.status).toBe(0);
      expect(r.stderr).toContain(NOTICE);
    },
  );

  it.skipIf(major >= 22)(
    'is not printed when the tier builds its client; the environment and other warnings stay as they were',
    async () => {
      const seen: string[] = [];
      const onWarning = (w: Error) => seen.push(`${w.name}: ${w.message}`);
      process.on('warning', onWarning);
      const before = process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED;
      try {
        const t = createS3Tier({
          bucket: 'notice',
          endpoint: 'http://127.0.0.1:9',
          credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
        });
        expect(process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED).toBe(before);
        process.emitWarning('a warning of the application', { code: 'APP_WARNING' });
        // Warnings are emitted on a later tick.
        await new Promise((r) => setTimeout(r, 20));
        await t.close();
      } finally {
        process.off('warning', onWarning);
      }
      expect(seen.some((w) => w.includes('a warning of the application'))).toBe(true);
      expect(seen.filter((w) => w.includes(NOTICE))).toEqual([]);
    },
  );
});
