/**
 * `tierkit warm --tensors … --rank r --world-size N --split …`: pre-warms exactly
 * the bytes one tensor-parallel rank of a model will load (see warm-tensors.ts).
 */
import type { Tier } from '@tierkit/tier-core';
import { stackFromConfig, type TierkitConfig, usage } from '../config.js';
import { TierkitMetrics } from '../metrics.js';
import { stderrProgress } from '../progress.js';
import { parseSplitRules } from '../tensor-split.js';
import { formatBytes, formatSeconds } from '../util.js';
import { DEFAULT_BLOCK_SIZE, warmTensors } from '../warm-tensors.js';
import { type Ctx, disabled, EXIT_OK, progressMode } from './shared.js';

/** The flags that make `warm` a tensor warm. */
export const TENSOR_FLAGS = ['tensors', 'rank', 'world-size', 'split'] as const;

export function isTensorWarm(ctx: Ctx): boolean {
  return TENSOR_FLAGS.some((f) => ctx.flags[f] !== undefined);
}

function count(ctx: Ctx, name: string, min: number): number | undefined {
  const v = ctx.flags[name] as string | undefined;
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim()) || Number(v) < min) {
    throw usage(`--${name} must be an integer ≥ ${min}, got '${v}'`, `--${name}`);
  }
  return Number(v);
}

const isModelFile = (k: string) => /\.(safetensors|gguf)$/i.test(k);

/**
 * The model the positionals name: files (`x.safetensors`, `x.gguf`, an
 * `*.index.json`), or a prefix (`llama/`) holding an index (used alone), else
 * its safetensors files, else its one GGUF file.
 */
async function modelKeys(ctx: Ctx, origin: Tier): Promise<string | string[]> {
  const items = ctx.positionals;
  if (items.length === 0) {
    throw usage(
      "warm --tensors/--rank needs the model: a file ('llama/model.safetensors.index.json', 'x.gguf') or a prefix ('llama/')",
    );
  }
  const keys: string[] = [];
  for (const item of items) {
    if (!item.endsWith('/')) {
      keys.push(item);
      continue;
    }
    const under: string[] = [];
    for await (const m of origin.list(item, { signal: ctx.signal })) {
      // Only the prefix's own files: a sibling model in a subfolder is another model.
      if (!m.key.slice(item.length).includes('/')) under.push(m.key);
    }
    const index = under.filter((k) => k.endsWith('.index.json'));
    const st = under.filter((k) => k.endsWith('.safetensors')).sort();
    const gguf = under.filter((k) => k.endsWith('.gguf'));
    if (index.length === 1) keys.push(index[0]!);
    else if (index.length > 1)
      throw usage(`'${item}' holds ${index.length} index files (${index.join(', ')}): name one`);
    else if (st.length > 0) keys.push(...st);
    else if (gguf.length === 1) keys.push(gguf[0]!);
    else if (gguf.length > 1)
      throw usage(`'${item}' holds ${gguf.length} GGUF files (${gguf.join(', ')}): name one`);
    else throw usage(`no model under '${item}': no *.index.json, .safetensors or .gguf file at the origin`);
  }
  if (keys.length > 1 && keys.some((k) => !isModelFile(k))) {
    throw usage('an index (*.index.json) names the whole model: give it alone');
  }
  return keys.length === 1 ? keys[0]! : keys;
}

export async function cmdWarmTensors(ctx: Ctx, config: TierkitConfig): Promise<number> {
  if (ctx.flags.manifest !== undefined)
    throw usage('warm --tensors/--rank takes the model as arguments, not --manifest', '--manifest');
  const worldSize = count(ctx, 'world-size', 1);
  const rank = count(ctx, 'rank', 0);
  if ((rank === undefined) !== (worldSize === undefined))
    throw usage('--rank and --world-size go together', rank === undefined ? '--rank' : '--world-size');
  if (rank !== undefined && worldSize !== undefined && rank >= worldSize)
    throw usage(`--rank ${rank} is not below --world-size ${worldSize}`, '--rank');
  const splitValues = (ctx.flags.split as string[] | undefined) ?? [];
  const slices = parseSplitRules(splitValues);
  if (slices.length > 0 && worldSize === undefined)
    throw usage('--split needs --rank and --world-size', '--split');
  const tensors = ctx.flags.tensors as string[] | undefined;
  if (config.disableCache) return disabled(ctx, 'warm');
  const metrics = new TierkitMetrics();
  const { stack, cache, origin } = await stackFromConfig(config, {
    env: ctx.env,
    wrapOrigin: (t) => metrics.instrument(t),
  });
  const view = stderrProgress(progressMode(ctx));
  try {
    await cache?.ready;
    const model = await modelKeys(ctx, origin);
    const started = Date.now();
    const summary = await warmTensors(stack, model, {
      ...(tensors ? { tensors } : {}),
      ...(rank !== undefined ? { rank, worldSize } : {}),
      slices,
      blockSize: config.blockSize ?? DEFAULT_BLOCK_SIZE,
      dryRun: ctx.flags['dry-run'] === true,
      signal: ctx.signal,
      onProgress: (done, total) => {
        const s = (Date.now() - started) / 1000;
        const rate = s > 0 ? done / s : 0;
        view.update({
          filesTotal: 1,
          filesSkipped: 0,
          filesToFetch: 1,
          filesDone: done >= total ? 1 : 0,
          filesFailed: 0,
          bytesTotal: total,
          bytesDone: done,
          bytesPerSecond: rate,
          etaSeconds: rate > 0 ? (total - done) / rate : undefined,
          elapsedMs: Date.now() - started,
          active: [],
        });
      },
    });
    view.done();
    if (ctx.json) ctx.out(JSON.stringify({ command: 'warm', mode: 'tensors', ...summary }, null, 2));
    else {
      for (const f of summary.files)
        ctx.out(
          `${summary.dryRun ? 'planned' : 'warmed '}  ${f.key}  ${formatBytes(f.bytes)} in ${f.ranges} ranges`,
        );
      const who = summary.worldSize > 1 ? `rank ${summary.rank} of ${summary.worldSize}: ` : '';
      ctx.out(
        `${who}${summary.tensors} tensors (${summary.sliced} sliced), ${formatBytes(summary.bytesPlanned)} of ${formatBytes(summary.modelBytes)}` +
          ` in ${formatSeconds(summary.elapsedMs / 1000)}; ${formatBytes(summary.bytesFetched)} from the origin`,
      );
    }
    return EXIT_OK;
  } finally {
    view.done();
    await stack.close();
  }
}
