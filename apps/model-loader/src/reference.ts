/**
 * An independent reference for a tensor-parallel slice of a 1-D or 2-D
 * tensor, written from the definition (rows for dim 0; a band of columns of
 * every row for the last dim, in whole blocks for quantised types) so tests
 * can check the library's slices against it.
 */
import type { TensorInfo } from '@tierkit/model';

export function referenceSlice(t: TensorInfo, whole: Uint8Array, dim: number, rank: number, world: number) {
  const shape = t.shape;
  if (shape.length === 0 || shape.length > 2) throw new Error('reference slices are for 1-D and 2-D tensors');
  const d = dim < 0 ? shape.length + dim : dim;
  const n = shape[d]!;
  const lo = Math.floor((rank * n) / world);
  const hi = Math.floor(((rank + 1) * n) / world);
  const { blockElems, blockBytes } = t.encoding;
  const cols = shape.at(-1)!;
  const rowBytes = (cols / blockElems) * blockBytes;
  if (shape.length === 1 || d === shape.length - 1) {
    const rows = shape.length === 1 ? 1 : shape[0]!;
    const a = (lo / blockElems) * blockBytes;
    const b = (hi / blockElems) * blockBytes;
    const out = new Uint8Array(rows * (b - a));
    for (let r = 0; r < rows; r++) out.set(whole.subarray(r * rowBytes + a, r * rowBytes + b), r * (b - a));
    return out;
  }
  return whole.slice(lo * rowBytes, hi * rowBytes);
}
