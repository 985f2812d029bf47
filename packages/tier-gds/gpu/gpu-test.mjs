#!/usr/bin/env node
// The GPU test of tier-gds (one command on a GPU machine; see README "GPU test").
// Writes results to $OUT (or ./gpu-results) as gds-gpu.json and gds-gpu.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { capabilities } from '@tierkit/native';
import { correctness, gpuSkipReason, markdown, throughput } from './gpu-lib.mjs';

const out = process.env.OUT ?? 'gpu-results';
const work = process.env.TIERKIT_GPU_WORKDIR ?? '/tmp/tierkit-gpu';
mkdirSync(out, { recursive: true });
mkdirSync(work, { recursive: true });
const caps = capabilities();
console.log(JSON.stringify(caps, null, 2));
const skip = gpuSkipReason();
const report = { capabilities: caps, skipped: skip };
if (!skip) {
  report.correctness = await correctness({ dir: work });
  console.log(JSON.stringify(report.correctness, null, 2));
  report.throughput = await throughput({
    dir: work,
    size: Number(process.env.TIERKIT_GPU_BYTES ?? 1024 ** 3),
  });
  console.log(markdown(report.throughput));
}
writeFileSync(join(out, 'gds-gpu.json'), JSON.stringify(report, null, 2));
writeFileSync(join(out, 'gds-gpu.md'), skip ? `Skipped: ${skip}\n` : markdown(report.throughput));
const bad =
  report.correctness && Object.entries(report.correctness).filter(([, r]) => r.error || r.exact === false);
if (bad?.length) {
  console.error('FAILED:', JSON.stringify(bad));
  process.exit(1);
}
