/**
 * A generated Llama-like model: BF16 safetensors shards with a Hugging Face
 * index, and the same architecture as one quantised GGUF file (Q4_K
 * matrices, F32 norms). Tensor bytes are an AES-CTR keystream keyed by the
 * tensor's file and name: incompressible like real weights, and any tensor
 * can be regenerated alone to check what a loader delivered.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { type PlannedFile, planGguf, planSafetensors, type SliceRule, type TensorSpec } from '@tierkit/model';

export interface SyntheticFile {
  /** Key relative to the model's folder. */
  readonly name: string;
  readonly plan: PlannedFile;
}

export interface SyntheticModel {
  readonly hidden: number;
  readonly layers: number;
  readonly shards: readonly SyntheticFile[];
  readonly index: Uint8Array;
  readonly gguf?: SyntheticFile;
  /** Bytes of all files together. */
  readonly size: number;
}

export const INDEX_NAME = 'model.safetensors.index.json';
export const GGUF_NAME = 'model-Q4_K.gguf';

/**
 * Megatron-style tensor parallelism for these names (PyTorch [out, in]
 * layout): q/k/v/gate/up and the vocabulary matrices split by output rows,
 * o/down by input columns; norms are replicated.
 */
export const SAFETENSORS_SLICES: readonly SliceRule[] = [
  { pattern: /\.self_attn\.[qkv]_proj\.weight$/, dim: 0 },
  { pattern: /\.mlp\.(gate|up)_proj\.weight$/, dim: 0 },
  { pattern: /\.(self_attn\.o_proj|mlp\.down_proj)\.weight$/, dim: -1 },
  { pattern: 'model.embed_tokens.weight', dim: 0 },
  { pattern: 'lm_head.weight', dim: 0 },
];
export const GGUF_SLICES: readonly SliceRule[] = [
  { pattern: /\.(attn_[qkv]|ffn_gate|ffn_up)\.weight$/, dim: 0 },
  { pattern: /\.(attn_output|ffn_down)\.weight$/, dim: -1 },
  { pattern: /^(token_embd|output)\.weight$/, dim: 0 },
];

function hiddenFor(bytes: number): number {
  if (bytes >= 1024 * 2 ** 20) return 2048;
  if (bytes >= 256 * 2 ** 20) return 1024;
  if (bytes >= 32 * 2 ** 20) return 512;
  return 256;
}

/** Plans a model of about `bytes` in `shardCount` safetensors shards (plus a GGUF file if asked). */
export function planModel(bytes: number, shardCount: number, withGguf = true): SyntheticModel {
  const h = hiddenFor(bytes);
  const inter = 2 * h;
  const vocab = 4 * h;
  const perLayer = (4 * h * h + 3 * h * inter) * 2 + 2 * h * 4;
  const layers = Math.max(1, Math.round((bytes - 2 * vocab * h * 2) / perLayer));
  const st: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [vocab, h] }];
  const gg: TensorSpec[] = [{ name: 'token_embd.weight', dtype: 'Q4_K', shape: [vocab, h] }];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    st.push(
      { name: `${p}.input_layernorm.weight`, dtype: 'F32', shape: [h] },
      { name: `${p}.self_attn.q_proj.weight`, dtype: 'BF16', shape: [h, h] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: 'BF16', shape: [h, h] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: 'BF16', shape: [h, h] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: 'BF16', shape: [h, h] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: 'F32', shape: [h] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: 'BF16', shape: [inter, h] },
      { name: `${p}.mlp.up_proj.weight`, dtype: 'BF16', shape: [inter, h] },
      { name: `${p}.mlp.down_proj.weight`, dtype: 'BF16', shape: [h, inter] },
    );
    const b = `blk.${i}`;
    gg.push(
      { name: `${b}.attn_norm.weight`, dtype: 'F32', shape: [h] },
      { name: `${b}.attn_q.weight`, dtype: 'Q4_K', shape: [h, h] },
      { name: `${b}.attn_k.weight`, dtype: 'Q4_K', shape: [h, h] },
      { name: `${b}.attn_v.weight`, dtype: 'Q4_K', shape: [h, h] },
      { name: `${b}.attn_output.weight`, dtype: 'Q8_0', shape: [h, h] },
      { name: `${b}.ffn_norm.weight`, dtype: 'F32', shape: [h] },
      { name: `${b}.ffn_gate.weight`, dtype: 'Q4_K', shape: [inter, h] },
      { name: `${b}.ffn_up.weight`, dtype: 'Q4_K', shape: [inter, h] },
      { name: `${b}.ffn_down.weight`, dtype: 'Q8_0', shape: [h, inter] },
    );
  }
  st.push(
    { name: 'model.norm.weight', dtype: 'F32', shape: [h] },
    { name: 'lm_head.weight', dtype: 'BF16', shape: [vocab, h] },
  );
  gg.push(
    { name: 'output_norm.weight', dtype: 'F32', shape: [h] },
    { name: 'output.weight', dtype: 'Q6_K', shape: [vocab, h] },
  );

  // Shards of about equal bytes, tensors in order.
  const total = planSafetensors(st).size;
  const count = Math.max(1, Math.min(shardCount, st.length));
  const groups: TensorSpec[][] = Array.from({ length: count }, () => []);
  let acc = 0;
  for (const s of st) {
    const g = Math.min(count - 1, Math.floor((acc / total) * count));
    groups[g]!.push(s);
    acc += s.shape.reduce((a, b) => a * b, 1) * (s.dtype === 'BF16' ? 2 : 4);
  }
  const nonEmpty = groups.filter((g) => g.length > 0);
  const pad = (n: number) => String(n).padStart(5, '0');
  const shards = nonEmpty.map((g, i) => ({
    name: `model-${pad(i + 1)}-of-${pad(nonEmpty.length)}.safetensors`,
    plan: planSafetensors(g, { format: 'pt', generator: 'tierkit-model-loader' }),
  }));
  const weightMap: Record<string, string> = {};
  for (const s of shards) for (const t of s.plan.tensors) weightMap[t.name] = s.name;
  const tensorBytes = shards.reduce((n, s) => n + s.plan.size - s.plan.header.byteLength, 0);
  const index = new TextEncoder().encode(
    `${JSON.stringify({ metadata: { total_size: tensorBytes }, weight_map: weightMap }, null, 2)}\n`,
  );
  const gguf = withGguf
    ? {
        name: GGUF_NAME,
        plan: planGguf(gg, {
          metadata: {
            'general.architecture': 'llama',
            'general.name': 'tierkit synthetic',
            'llama.block_count': layers,
            'llama.embedding_length': h,
            'llama.feed_forward_length': inter,
          },
        }),
      }
    : undefined;
  const size = shards.reduce((n, s) => n + s.plan.size, 0) + index.byteLength + (gguf?.plan.size ?? 0);
  return { hidden: h, layers, shards, index, gguf, size };
}

/** The bytes of tensor `name` in file `file` (its keystream). */
export function tensorContent(file: string, name: string, length: number): Uint8Array {
  const key = createHash('sha256').update(`${file}\0${name}`).digest().subarray(0, 16);
  const out = new Uint8Array(length);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16, 0));
  const step = 4 << 20;
  for (let at = 0; at < length; at += step) {
    const n = Math.min(step, length - at);
    out.set(cipher.update(new Uint8Array(n)), at);
  }
  return out;
}

/** A file's bytes in order, in chunks: header, then each tensor (and GGUF's zero padding). */
export async function* fileBytes(f: SyntheticFile): AsyncGenerator<Uint8Array> {
  yield f.plan.header;
  let at = f.plan.header.byteLength;
  for (const t of f.plan.tensors) {
    if (t.offset > at) yield new Uint8Array(t.offset - at);
    yield tensorContent(f.name, t.name, t.length);
    at = t.offset + t.length;
    // Let an upload drain between tensors.
    await new Promise((r) => setImmediate(r));
  }
  if (f.plan.size > at) yield new Uint8Array(f.plan.size - at);
}

/** Every file of the model, with its key under `prefix`. */
export function modelFiles(m: SyntheticModel): SyntheticFile[] {
  return [...m.shards, ...(m.gguf ? [m.gguf] : [])];
}
