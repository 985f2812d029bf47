/**
 * Opening a cache file to look at it (a header, a size) without counting as a
 * use: LMCache's GDS directory has no use journal, so a purge orders entries
 * by the later of atime and mtime, and tierkit's own inspections (ls, stat,
 * verify, describe) must not make a cold entry look hot. O_NOATIME is allowed
 * to the file's owner (and root); anyone else opens plainly.
 */
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

/** Opens `path` read-only without updating its atime where the kernel allows it. */
export async function openToInspect(path: string): Promise<FileHandle> {
  const noAtime = constants.O_NOATIME;
  if (noAtime) {
    try {
      return await open(path, constants.O_RDONLY | noAtime);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    }
  }
  return open(path, 'r');
}
