/**
 * The one place a directory origin is opened (`--origin /mnt/models`, the last
 * `file:` entry of `tiers:`): read-only, so tierkit never writes into a model
 * share — no `.tierkit/` folder, journal or temp files — it works on a
 * read-only mount, and opening it does not walk the tree.
 */
import { type FsTier, fsTierFromUrl } from '@tierkit/tier-fs';

export function directoryOrigin(url: URL, extra: { name: string }): FsTier {
  return fsTierFromUrl(url, { name: extra.name, readOnly: true });
}
