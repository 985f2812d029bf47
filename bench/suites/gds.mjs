// GPU-Direct Storage: reading the same bytes into GPU memory with tier-gds (cuFile),
// tier-gds's POSIX path (pread + host-to-device copy) and PyTorch (torch.frombuffer,
// safetensors). Skips with the reason where there is no GPU.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpuSkipReason, markdown, throughput } from '../../packages/tier-gds/gpu/gpu-lib.mjs';

export const name = 'gds';
export const title = 'GPU-Direct Storage read into GPU memory';

export default async function run({ quick, log }) {
  const skip = gpuSkipReason();
  if (skip) {
    log(`skipped: ${skip}`);
    return {
      markdown: `Skipped: ${skip}\n\nRun on a GPU machine: see packages/tier-gds/README.md, "GPU test".\n`,
      data: { skipped: skip },
    };
  }
  const dir = await mkdtemp(join(process.env.TIERKIT_GPU_WORKDIR ?? tmpdir(), 'tierkit-bench-gds-'));
  try {
    const result = await throughput({
      dir,
      size: quick ? 256 * 1024 * 1024 : 1024 * 1024 * 1024,
      runs: quick ? 3 : 5,
    });
    log(markdown(result));
    return { markdown: markdown(result), data: result };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
