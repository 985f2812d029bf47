/*
 * The 3FS USRBIO client interface the stand-in implements, declared for the
 * stand-in alone (deliberately NOT the addon's csrc/abi.h: a layout mistake there
 * must show up as a failing test, not be shared by both sides).
 *
 * Declared from deepseek-ai/3FS src/lib/api/hf3fs_usrbio.h at commit
 * 0ea5a9c29c8eb5a7c035d007a31838a8e9dbdf76 (field order and types are the ABI);
 * the behaviour the stand-in follows is that of src/lib/api/UsrbIo.cc and
 * src/fuse/IoRing.cc (jobsToProc) at the same commit.
 */
#ifndef HF3FS_STANDIN_DECLS_H
#define HF3FS_STANDIN_DECLS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* A shared buffer: host memory in /dev/shm, published under <mount>/3fs-virt/iovs. */
struct hf3fs_iov {
  uint8_t *base;
  void *iovh; /* the library's handle; NULL for a wrapped buffer */
  char id[16];
  char mount_point[256];
  size_t size;
  size_t block_size;
  int numa;
};

/* An I/O ring. */
struct hf3fs_ior {
  struct hf3fs_iov iov; /* the ring's own shared memory */
  void *iorh;
  char mount_point[256];
  bool for_read;
  int io_depth; /* > 0: exactly io_depth ios per batch; 0: all, at once; < 0: at most -io_depth */
  int priority;
  int timeout; /* ms */
  uint64_t flags;
};

struct hf3fs_cqe {
  int32_t index;
  int32_t reserved;
  int64_t result; /* bytes, or -errno */
  const void *userdata;
};

_Static_assert(sizeof(struct hf3fs_iov) == 312, "hf3fs_iov on LP64");
_Static_assert(sizeof(struct hf3fs_ior) == 600, "hf3fs_ior on LP64");
_Static_assert(sizeof(struct hf3fs_cqe) == 24, "hf3fs_cqe on LP64");

bool hf3fs_is_hf3fs(int fd);
int hf3fs_extract_mount_point(char *hf3fs_mount_point, int size, const char *path);
int hf3fs_iovcreate(struct hf3fs_iov *iov, const char *hf3fs_mount_point, size_t size, size_t block_size, int numa);
void hf3fs_iovdestroy(struct hf3fs_iov *iov);
int hf3fs_iorcreate4(struct hf3fs_ior *ior, const char *hf3fs_mount_point, int entries, bool for_read, int io_depth,
                     int timeout, int numa, uint64_t flags);
void hf3fs_iordestroy(struct hf3fs_ior *ior);
int hf3fs_reg_fd(int fd, uint64_t flags);
void hf3fs_dereg_fd(int fd);
int hf3fs_prep_io(const struct hf3fs_ior *ior, const struct hf3fs_iov *iov, bool read, void *ptr, int fd, size_t off,
                  uint64_t len, const void *userdata);
int hf3fs_submit_ios(const struct hf3fs_ior *ior);
int hf3fs_wait_for_ios(const struct hf3fs_ior *ior, struct hf3fs_cqe *cqes, int cqec, int min_results,
                       const struct timespec *abs_timeout);

#endif
