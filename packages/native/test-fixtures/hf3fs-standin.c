/*
 * STAND-IN for 3FS's libhf3fs_api_shared.so, for tests only. It is NOT 3FS: it
 * keeps "shared memory" in the process and serves every io with pread/pwrite on
 * an ordinary directory, so tierkit's USRBIO binding can be driven end to end on
 * a machine without 3FS. It follows the documented conventions of the real API:
 * hf3fs_reg_fd fails with a POSITIVE errno, prep/submit/wait with -errno;
 * prep_io returns the io's index; the ring serves ios by io_depth (>0 exactly
 * io_depth at a time, 0 all at once, <0 at most -io_depth at a time).
 *
 * Environment: HF3FS_STANDIN_MOUNT = the directory that plays the mount point;
 * HF3FS_STANDIN_TRACE = a file every call is appended to (the call sequence).
 * Deviation: a wait that cannot be satisfied and has no deadline returns
 * -EDEADLK instead of blocking forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../csrc/abi.h"

#define MAX_FDS 65536

struct standin_io {
  int used, submitted, done, read, fd;
  uint8_t *ptr;
  size_t off;
  uint64_t len;
  const void *userdata;
  int64_t result;
};

struct standin_ring {
  int entries, for_read, io_depth;
  struct standin_io *ios;
};

static unsigned char registered[MAX_FDS];

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void trace(const char *fmt, ...) {
  const char *path = getenv("HF3FS_STANDIN_TRACE");
  if (!path) return;
  FILE *f = fopen(path, "a");
  if (!f) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fclose(f);
}

static const char *mount_dir(void) { return getenv("HF3FS_STANDIN_MOUNT"); }

bool hf3fs_is_hf3fs(int fd) {
  trace("is_hf3fs %d", fd);
  return mount_dir() != NULL && fd >= 0;
}

int hf3fs_extract_mount_point(char *out, int size, const char *path) {
  const char *m = mount_dir();
  trace("extract_mount_point %s", path);
  if (!m) return -1;
  size_t n = strlen(m);
  if (strncmp(path, m, n) != 0 || (path[n] != '\0' && path[n] != '/')) return -1;
  if ((int)n + 1 <= size) {
    memcpy(out, m, n);
    out[n] = '\0';
  }
  return (int)n + 1;
}

static int check_mount(const char *mount) {
  struct stat st;
  if (!mount || stat(mount, &st) != 0 || !S_ISDIR(st.st_mode)) return -ENOENT;
  if (strlen(mount) >= 256) return -ENAMETOOLONG;
  return 0;
}

int hf3fs_iovcreate(struct tk_hf3fs_iov *iov, const char *mount, size_t size, size_t block_size, int numa) {
  trace("iovcreate %zu", size);
  int r = check_mount(mount);
  if (r) return r;
  void *p = NULL;
  if (posix_memalign(&p, 4096, size ? size : 4096) != 0) return -ENOMEM;
  memset(iov, 0, sizeof(*iov));
  iov->base = p;
  iov->iovh = p;
  snprintf(iov->id, sizeof(iov->id), "standin");
  strcpy(iov->mount_point, mount);
  iov->size = size;
  iov->block_size = block_size;
  iov->numa = numa;
  return 0;
}

void hf3fs_iovdestroy(struct tk_hf3fs_iov *iov) {
  trace("iovdestroy");
  free(iov->iovh);
  iov->iovh = NULL;
  iov->base = NULL;
}

int hf3fs_iorcreate4(struct tk_hf3fs_ior *ior, const char *mount, int entries, bool for_read, int io_depth,
                     int timeout, int numa, uint64_t flags) {
  trace("iorcreate4 %d %s %d", entries, for_read ? "read" : "write", io_depth);
  int r = check_mount(mount);
  if (r) return r;
  if (entries <= 0 || io_depth > entries || -io_depth > entries) return -EINVAL;
  struct standin_ring *ring = calloc(1, sizeof(*ring));
  if (!ring) return -ENOMEM;
  ring->ios = calloc((size_t)entries, sizeof(struct standin_io));
  if (!ring->ios) {
    free(ring);
    return -ENOMEM;
  }
  ring->entries = entries;
  ring->for_read = for_read;
  ring->io_depth = io_depth;
  memset(ior, 0, sizeof(*ior));
  ior->iorh = ring;
  strcpy(ior->mount_point, mount);
  ior->for_read = for_read;
  ior->io_depth = io_depth;
  ior->timeout = timeout;
  ior->flags = flags;
  ior->iov.numa = numa;
  return 0;
}

void hf3fs_iordestroy(struct tk_hf3fs_ior *ior) {
  trace("iordestroy");
  struct standin_ring *ring = ior->iorh;
  if (ring) {
    free(ring->ios);
    free(ring);
  }
  ior->iorh = NULL;
}

int hf3fs_reg_fd(int fd, uint64_t flags) {
  (void)flags;
  trace("reg_fd %d", fd);
  if (fd < 0 || fd >= MAX_FDS || fcntl(fd, F_GETFD) < 0) return EBADF; /* positive, as documented */
  if (registered[fd]) return EINVAL;
  registered[fd] = 1;
  return 0;
}

void hf3fs_dereg_fd(int fd) {
  trace("dereg_fd %d", fd);
  if (fd >= 0 && fd < MAX_FDS) registered[fd] = 0;
}

int hf3fs_prep_io(const struct tk_hf3fs_ior *ior, const struct tk_hf3fs_iov *iov, bool read, void *ptr, int fd,
                  size_t off, uint64_t len, const void *userdata) {
  trace("prep_io %s %d %zu %llu", read ? "read" : "write", fd, off, (unsigned long long)len);
  struct standin_ring *ring = ior->iorh;
  if (!ring) return -EINVAL;
  if ((int)read != ring->for_read) return -EINVAL; /* a ring is for reads or for writes */
  if (fd < 0 || fd >= MAX_FDS || !registered[fd]) return -EBADF;
  uint8_t *p = ptr;
  if (p < iov->base || p + len > iov->base + iov->size) return -EFAULT;
  for (int i = 0; i < ring->entries; i++) {
    struct standin_io *io = &ring->ios[i];
    if (io->used) continue;
    memset(io, 0, sizeof(*io));
    io->used = 1;
    io->read = read;
    io->fd = fd;
    io->ptr = p;
    io->off = off;
    io->len = len;
    io->userdata = userdata;
    return i;
  }
  return -EAGAIN; /* the ring is full until completions are reaped */
}

int hf3fs_submit_ios(const struct tk_hf3fs_ior *ior) {
  trace("submit_ios");
  struct standin_ring *ring = ior->iorh;
  if (!ring) return -EINVAL;
  for (int i = 0; i < ring->entries; i++) {
    if (ring->ios[i].used && !ring->ios[i].done) ring->ios[i].submitted = 1;
  }
  return 0;
}

static void run_io(struct standin_io *io) {
  uint64_t done = 0;
  while (done < io->len) {
    ssize_t r = io->read ? pread(io->fd, io->ptr + done, io->len - done, (off_t)(io->off + done))
                         : pwrite(io->fd, io->ptr + done, io->len - done, (off_t)(io->off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      io->result = -errno;
      io->done = 1;
      return;
    }
    if (r == 0) break;
    done += (uint64_t)r;
  }
  io->result = (int64_t)done;
  io->done = 1;
}

/* The io worker: takes submitted ios as io_depth says. */
static void progress(struct standin_ring *ring) {
  int waiting = 0;
  for (int i = 0; i < ring->entries; i++) waiting += ring->ios[i].submitted && !ring->ios[i].done;
  int take = waiting;
  if (ring->io_depth > 0) take = waiting - waiting % ring->io_depth; /* whole batches only */
  if (ring->io_depth < 0 && take > -ring->io_depth) take = -ring->io_depth;
  for (int i = 0; i < ring->entries && take > 0; i++) {
    struct standin_io *io = &ring->ios[i];
    if (io->submitted && !io->done) {
      run_io(io);
      take--;
    }
  }
}

int hf3fs_wait_for_ios(const struct tk_hf3fs_ior *ior, struct tk_hf3fs_cqe *cqes, int cqec, int min_results,
                       const struct timespec *abs_timeout) {
  trace("wait_for_ios %d %d", cqec, min_results);
  struct standin_ring *ring = ior->iorh;
  if (!ring || cqec <= 0 || min_results > cqec) return -EINVAL;
  int n = 0;
  for (;;) {
    progress(ring);
    for (int i = 0; i < ring->entries && n < cqec; i++) {
      struct standin_io *io = &ring->ios[i];
      if (!io->done) continue;
      cqes[n].index = i;
      cqes[n].reserved = 0;
      cqes[n].result = io->result;
      cqes[n].userdata = io->userdata;
      memset(io, 0, sizeof(*io));
      n++;
    }
    if (n >= min_results) return n;
    int runnable = 0;
    for (int i = 0; i < ring->entries; i++) runnable += ring->ios[i].submitted && !ring->ios[i].done;
    if (ring->io_depth > 0) runnable -= runnable % ring->io_depth;
    if (runnable > 0) continue;
    if (!abs_timeout) return -EDEADLK;
    /* Nothing more can complete: sleep to the deadline, then report what there is. */
    clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, abs_timeout, NULL);
    return n;
  }
}
