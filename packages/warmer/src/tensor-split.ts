/**
 * Tensor-parallel split rules for `warm --split`: `PATTERN=DIM` (a tensor-name
 * glob or exact name, and the dimension a rank's slice is cut along), or the
 * `megatron` preset for Llama-style checkpoints.
 */
import type { SliceRule } from '@tierkit/model';
import { TierError } from '@tierkit/tier-core';

/**
 * Megatron-style sharding of Llama-family names (Hugging Face and GGUF):
 * column-parallel layers (q/k/v, gate/up, the embedding and the LM head) split
 * their output rows (dim 0); row-parallel layers (o_proj, down_proj) their
 * input columns (dim 1). Everything else (norms, biases of row-parallel layers)
 * is replicated on every rank.
 */
export const MEGATRON_SLICES: readonly SliceRule[] = [
  { pattern: /(^|\.)(q|k|v|gate|up)_proj\.(weight|bias)$/, dim: 0 },
  { pattern: /(^|\.)(o|down)_proj\.weight$/, dim: 1 },
  { pattern: /(^|\.)embed_tokens\.weight$/, dim: 0 },
  { pattern: /(^|\.)lm_head\.weight$/, dim: 0 },
  // GGUF names of the same layers (llama.cpp's tensor names).
  { pattern: /(^|\.)(attn_q|attn_k|attn_v|ffn_gate|ffn_up)\.(weight|bias)$/, dim: 0 },
  { pattern: /(^|\.)(attn_output|ffn_down)\.weight$/, dim: 1 },
  { pattern: /^(token_embd|output)\.weight$/, dim: 0 },
];

export const SPLIT_PRESETS: Readonly<Record<string, readonly SliceRule[]>> = { megatron: MEGATRON_SLICES };

function bad(message: string): TierError {
  return new TierError('INVALID_ARGUMENT', message, {
    retryable: false,
    details: { usage: true, setting: '--split' },
  });
}

/** The rules `--split` values give, in order (the first rule matching a tensor decides). */
export function parseSplitRules(values: readonly string[]): SliceRule[] {
  const rules: SliceRule[] = [];
  for (const v of values) {
    const preset = SPLIT_PRESETS[v];
    if (preset) {
      rules.push(...preset);
      continue;
    }
    const eq = v.lastIndexOf('=');
    if (eq <= 0) {
      throw bad(
        `--split '${v}': expected PATTERN=DIM (e.g. '*.q_proj.weight=0', '*.o_proj.weight=1') or a preset (${Object.keys(SPLIT_PRESETS).join(', ')})`,
      );
    }
    const pattern = v.slice(0, eq);
    const dimText = v.slice(eq + 1).trim();
    if (!/^-?\d+$/.test(dimText)) {
      throw bad(`--split '${v}': DIM must be an integer (0 for rows, 1 or -1 for columns), got '${dimText}'`);
    }
    const dim = Number(dimText);
    if (dim < -8 || dim > 7) throw bad(`--split '${v}': DIM ${dim} is out of range`);
    rules.push({ pattern, dim });
  }
  return rules;
}
