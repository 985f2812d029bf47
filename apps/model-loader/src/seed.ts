/** Puts the synthetic model in the origin once: each file streamed, then the index last (it marks a complete seed). */
import type { Tier } from '@tierkit/tier-core';
import { fileBytes, INDEX_NAME, modelFiles, type SyntheticModel } from './synthetic.js';

/** True when the origin already holds this exact model. */
export async function isSeeded(origin: Tier, model: SyntheticModel): Promise<boolean> {
  const index = await origin.stat(INDEX_NAME);
  if (index?.size !== model.index.byteLength) return false;
  for (const f of modelFiles(model)) {
    if ((await origin.stat(f.name))?.size !== f.plan.size) return false;
  }
  return true;
}

export async function seed(
  origin: Tier,
  model: SyntheticModel,
  onFile?: (name: string) => void,
): Promise<void> {
  for (const f of modelFiles(model)) {
    onFile?.(f.name);
    await origin.write(f.name, fileBytes(f), { size: f.plan.size });
  }
  await origin.write(INDEX_NAME, model.index);
}
