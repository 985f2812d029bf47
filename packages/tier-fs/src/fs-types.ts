/** The filesystems whose kind sets FsTier's defaults (statfs f_type values). */

/** statfs f_type values of the filesystems the defaults below name. */
export const FS = {
  ext4: 0xef53, // also ext2/3
  xfs: 0x58465342,
  btrfs: 0x9123683e,
  f2fs: 0xf2f52010,
  zfs: 0x2fc12fc1,
  tmpfs: 0x01021994,
  overlay: 0x794c7630,
} as const;

/** Filesystems where fills write with O_DIRECT by default (see `directFill`). */
export const DIRECT_FS_TYPES = new Set<number>([FS.ext4, FS.xfs, FS.btrfs, FS.f2fs]);
/** Filesystems where an lstat never waits on a network (see `descriptorCheck`). */
export const LOCAL_FS_TYPES = new Set<number>([...DIRECT_FS_TYPES, FS.zfs, FS.tmpfs, FS.overlay]);
