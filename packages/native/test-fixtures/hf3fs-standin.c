/*
 * STAND-IN for 3FS's libhf3fs_api_shared.so, for tests only. It is NOT 3FS: the
 * "mount" is an ordinary directory (HF3FS_STANDIN_MOUNT) and ios are served with
 * pread/pwrite. It is strict where real 3FS is, following UsrbIo.cc and
 * IoRing.cc (see hf3fs-usrbio-decls.h for the commit), so a client that works
 * here has not relied on anything 3FS refuses:
 *
 * - iovs live in /dev/shm and are published as <mount>/3fs-virt/iovs/<id hex>
 *   symlinks; an io is served through the stand-in's OWN mapping of the shm it
 *   finds by the iov's id, so memory that is not a published iov never moves data;
 * - hf3fs_reg_fd: EBADF (positive) for an fd not on the mount, EINVAL when already
 *   registered; on success it dups the fd and returns -dupfd (<= 0), as 3FS does;
 * - hf3fs_prep_io: -EINVAL for a zero length, a range outside the iov, a read/write
 *   ring mismatch; -EBADF for an unregistered fd; -EACCES for an fd opened without
 *   the access the io needs; -EAGAIN when all `entries` slots are taken;
 * - the io worker takes prepared ios as jobsToProc does: io_depth > 0 exactly
 *   io_depth at a time (never fewer), 0 all there are, < 0 at most -io_depth (and,
 *   with a timeout, fewer only once the timeout has passed), and never more than
 *   entries - 1 - (completions not yet reaped);
 * - hf3fs_wait_for_ios clamps min_results to cqec; -EINVAL for cqec <= 0.
 *
 * Deviations, all stricter: a second hf3fs_wait_for_ios on a ring while one runs
 * returns -EBUSY (3FS lets two waiters split the completions unpredictably); a wait
 * that can never be satisfied and has no deadline returns -EDEADLK instead of
 * blocking forever; an io whose iov is not published completes with -ENOENT.
 *
 * HF3FS_STANDIN_TRACE = a file every call is appended to (the call sequence);
 * HF3FS_STANDIN_FAIL_PREP_AT = "N" (or "N:anything", to arm it again) makes the N-th
 * hf3fs_prep_io after the variable took that value fail with -EIO (to test recovery
 * from a failure in the middle of a batch).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hf3fs-usrbio-decls.h"

#define MAX_FDS 65536

struct regfd {
  int fd, dupfd, status;
};
static struct regfd *registered[MAX_FDS];

enum { FREE = 0, QUEUED, DONE };

struct sio {
  int state;
  long seq;
  bool read;
  int fd; /* the dup the registration holds */
  char buf_id[16];
  size_t buf_off;
  size_t off;
  uint64_t len;
  const void *userdata;
  int64_t result;
};

struct ring {
  int entries, io_depth, timeout_ms;
  bool for_read;
  long next_seq;
  atomic_int waiting;
  bool has_last_check;
  struct timespec last_check;
  char mount[256];
  struct sio *ios;
};

struct iov_handle {
  char shm_name[64];
  char link[PATH_MAX + 64];
};

static long preps_since_armed;
static char armed[64];

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
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

static bool under_mount(const char *path) {
  const char *m = mount_dir();
  if (!m) return false;
  size_t n = strlen(m);
  return strncmp(path, m, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

bool hf3fs_is_hf3fs(int fd) {
  char link[64], target[PATH_MAX];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof(target) - 1);
  if (n < 0) return false;
  target[n] = '\0';
  return under_mount(target);
}

int hf3fs_extract_mount_point(char *out, int size, const char *path) {
  const char *m = mount_dir();
  trace("extract_mount_point %s", path);
  if (!m || !under_mount(path)) return -1;
  char virt[PATH_MAX];
  struct stat st;
  snprintf(virt, sizeof(virt), "%s/3fs-virt", m);
  if (stat(virt, &st) != 0) return -1;
  int n = (int)strlen(m);
  if (n < size) strcpy(out, m);
  return n + 1;
}

static int iovs_dir(const char *mount, char *out, size_t size) {
  if (!mount || !*mount || strlen(mount) >= 256) return -EINVAL;
  snprintf(out, size, "%s/3fs-virt/iovs", mount);
  int fd = open(out, O_DIRECTORY | O_RDONLY);
  if (fd < 0) return -errno;
  close(fd);
  return 0;
}

static void hex_id(const char id[16], char out[33]) {
  for (int i = 0; i < 16; i++) sprintf(out + 2 * i, "%02x", (unsigned char)id[i]);
}

int hf3fs_iovcreate(struct hf3fs_iov *iov, const char *mount, size_t size, size_t block_size, int numa) {
  trace("iovcreate %zu", size);
  char dir[PATH_MAX];
  if (!iov) return -EINVAL;
  int r = iovs_dir(mount, dir, sizeof(dir));
  if (r) return r;
  if (size == 0) return -EINVAL;
  struct iov_handle *h = calloc(1, sizeof(*h));
  if (!h) return -ENOMEM;
  char id[16], hex[33];
  int rnd = open("/dev/urandom", O_RDONLY);
  if (rnd < 0 || read(rnd, id, sizeof(id)) != (ssize_t)sizeof(id)) {
    if (rnd >= 0) close(rnd);
    free(h);
    return -EIO;
  }
  close(rnd);
  hex_id(id, hex);
  snprintf(h->shm_name, sizeof(h->shm_name), "/hf3fs-iov-%s", hex);
  int fd = shm_open(h->shm_name, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    free(h);
    return -EIO;
  }
  void *p = MAP_FAILED;
  if (ftruncate(fd, (off_t)size) == 0) p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(h->shm_name);
    free(h);
    return -EIO;
  }
  char target[PATH_MAX];
  snprintf(target, sizeof(target), "/dev/shm%s", h->shm_name);
  if (block_size) snprintf(h->link, sizeof(h->link), "%s/%s.b%zu", dir, hex, block_size);
  else snprintf(h->link, sizeof(h->link), "%s/%s", dir, hex);
  if (symlink(target, h->link) != 0) {
    int e = errno;
    munmap(p, size);
    shm_unlink(h->shm_name);
    free(h);
    return -e;
  }
  memset(iov, 0, sizeof(*iov));
  iov->base = p;
  iov->iovh = h;
  memcpy(iov->id, id, sizeof(id));
  strcpy(iov->mount_point, mount);
  iov->size = size;
  iov->block_size = block_size;
  iov->numa = numa;
  return 0;
}

void hf3fs_iovdestroy(struct hf3fs_iov *iov) {
  trace("iovdestroy");
  if (!iov || !iov->iovh) return; /* a wrapped iov is not ours to free */
  struct iov_handle *h = iov->iovh;
  unlink(h->link);
  munmap(iov->base, iov->size);
  shm_unlink(h->shm_name);
  free(h);
  iov->iovh = NULL;
  iov->base = NULL;
}

int hf3fs_iorcreate4(struct hf3fs_ior *ior, const char *mount, int entries, bool for_read, int io_depth,
                     int timeout, int numa, uint64_t flags) {
  trace("iorcreate4 %d %s %d %d", entries, for_read ? "read" : "write", io_depth, timeout);
  char dir[PATH_MAX];
  if (!ior || timeout < 0) return -EINVAL;
  int r = iovs_dir(mount, dir, sizeof(dir));
  if (r) return r;
  if (entries <= 0) return -EINVAL;
  struct ring *ring = calloc(1, sizeof(*ring));
  if (!ring) return -ENOMEM;
  ring->ios = calloc((size_t)entries, sizeof(struct sio));
  if (!ring->ios) {
    free(ring);
    return -ENOMEM;
  }
  ring->entries = entries;
  ring->for_read = for_read;
  ring->io_depth = io_depth;
  ring->timeout_ms = timeout;
  strcpy(ring->mount, mount);
  memset(ior, 0, sizeof(*ior));
  ior->iorh = ring;
  strcpy(ior->mount_point, mount);
  ior->for_read = for_read;
  ior->io_depth = io_depth;
  ior->timeout = timeout;
  ior->flags = flags;
  ior->iov.size = (size_t)entries;
  ior->iov.numa = numa;
  return 0;
}

void hf3fs_iordestroy(struct hf3fs_ior *ior) {
  struct ring *ring = ior ? ior->iorh : NULL;
  int pending = 0;
  if (ring)
    for (int i = 0; i < ring->entries; i++) pending += ring->ios[i].state != FREE;
  trace("iordestroy pending=%d", pending);
  if (!ring) return;
  free(ring->ios);
  free(ring);
  ior->iorh = NULL;
}

int hf3fs_reg_fd(int fd, uint64_t flags) {
  (void)flags;
  trace("reg_fd %d", fd);
  if (fd < 0 || fd >= MAX_FDS || !hf3fs_is_hf3fs(fd)) return EBADF;
  if (registered[fd]) return EINVAL;
  int status = fcntl(fd, F_GETFL);
  int dupfd = dup(fd);
  if (dupfd < 0) return errno;
  if (dupfd >= MAX_FDS || registered[dupfd]) {
    close(dupfd);
    return EINVAL;
  }
  struct regfd *r = malloc(sizeof(*r));
  if (!r) {
    close(dupfd);
    return ENOMEM;
  }
  r->fd = fd;
  r->dupfd = dupfd;
  r->status = status;
  registered[fd] = r;
  registered[dupfd] = r;
  return -dupfd;
}

void hf3fs_dereg_fd(int fd) {
  trace("dereg_fd %d", fd);
  if (fd < 0 || fd >= MAX_FDS || !registered[fd]) return;
  struct regfd *r = registered[fd];
  registered[r->fd] = NULL;
  registered[r->dupfd] = NULL;
  close(r->dupfd);
  free(r);
}

int hf3fs_prep_io(const struct hf3fs_ior *ior, const struct hf3fs_iov *iov, bool read, void *ptr, int fd,
                  size_t off, uint64_t len, const void *userdata) {
  trace("prep_io %s %d %zu %llu", read ? "read" : "write", fd, off, (unsigned long long)len);
  const char *fail_at = getenv("HF3FS_STANDIN_FAIL_PREP_AT");
  if (fail_at) {
    if (strncmp(fail_at, armed, sizeof(armed)) != 0) {
      snprintf(armed, sizeof(armed), "%s", fail_at);
      preps_since_armed = 0;
    }
    if (++preps_since_armed == atol(fail_at)) return -EIO;
  }
  if (!ior || !ior->iorh || read != ior->for_read || !iov || !ptr || !iov->base || len == 0 || fd == INT_MIN) {
    return -EINVAL;
  }
  uintptr_t base = (uintptr_t)iov->base, addr = (uintptr_t)ptr;
  if (addr < base) return -EINVAL;
  size_t buf_off = addr - base;
  if (buf_off > iov->size || len > iov->size - buf_off) return -EINVAL;
  int afd = fd < 0 ? -fd : fd;
  if (afd >= MAX_FDS) return -EINVAL;
  struct regfd *r = registered[afd];
  if (!r) return -EBADF;
  int mode = r->status & O_ACCMODE;
  if ((read && mode == O_WRONLY) || (!read && mode == O_RDONLY)) return -EACCES;
  struct ring *ring = ior->iorh;
  for (int i = 0; i < ring->entries; i++) {
    struct sio *io = &ring->ios[i];
    if (io->state != FREE) continue;
    memset(io, 0, sizeof(*io));
    io->state = QUEUED;
    io->seq = ring->next_seq++;
    io->read = read;
    io->fd = r->dupfd;
    memcpy(io->buf_id, iov->id, sizeof(io->buf_id));
    io->buf_off = buf_off;
    io->off = off;
    io->len = len;
    io->userdata = userdata;
    return i;
  }
  return -EAGAIN;
}

int hf3fs_submit_ios(const struct hf3fs_ior *ior) {
  trace("submit_ios");
  if (!ior || !ior->iorh) return -EINVAL;
  return 0;
}

/* The daemon's side: finds the shm published under the iov's id and maps it itself. */
static int64_t run_io(struct ring *ring, struct sio *io) {
  char dir[PATH_MAX], hex[33], target[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/3fs-virt/iovs", ring->mount);
  hex_id(io->buf_id, hex);
  DIR *d = opendir(dir);
  if (!d) return -ENOENT;
  ssize_t tn = -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, hex, 32) == 0 && (e->d_name[32] == '\0' || e->d_name[32] == '.')) {
      char link[PATH_MAX + 256];
      snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
      tn = readlink(link, target, sizeof(target) - 1);
      break;
    }
  }
  closedir(d);
  if (tn < 0) return -ENOENT;
  target[tn] = '\0';
  if (strncmp(target, "/dev/shm/", 9) != 0) return -ENOENT;
  int sfd = open(target, O_RDWR);
  if (sfd < 0) return -ENOENT;
  struct stat st;
  if (fstat(sfd, &st) != 0 || io->buf_off + io->len > (uint64_t)st.st_size) {
    close(sfd);
    return -EINVAL;
  }
  uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
  close(sfd);
  if (map == MAP_FAILED) return -EIO;
  uint64_t done = 0;
  int64_t result = 0;
  while (done < io->len) {
    ssize_t r = io->read ? pread(io->fd, map + io->buf_off + done, io->len - done, (off_t)(io->off + done))
                         : pwrite(io->fd, map + io->buf_off + done, io->len - done, (off_t)(io->off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      result = -errno;
      break;
    }
    if (r == 0) break;
    done += (uint64_t)r;
  }
  munmap(map, (size_t)st.st_size);
  return result < 0 ? result : (int64_t)done;
}

static int count_state(struct ring *ring, int state) {
  int n = 0;
  for (int i = 0; i < ring->entries; i++) n += ring->ios[i].state == state;
  return n;
}

static struct sio *oldest(struct ring *ring, int state) {
  struct sio *best = NULL;
  for (int i = 0; i < ring->entries; i++) {
    struct sio *io = &ring->ios[i];
    if (io->state == state && (!best || io->seq < best->seq)) best = io;
  }
  return best;
}

static long ms_since(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - t->tv_sec) * 1000L + (now.tv_nsec - t->tv_nsec) / 1000000L;
}

/* IoRing::jobsToProc, then the batch served. Returns 1 when it served something. */
static int progress(struct ring *ring) {
  int served = 0;
  for (;;) {
    int sqes = count_state(ring, QUEUED);
    int cqe_avail = ring->entries - 1 - count_state(ring, DONE);
    if (sqes == 0) break;
    int to_proc;
    if (ring->io_depth > 0) {
      to_proc = ring->io_depth;
      if (to_proc > sqes || to_proc > cqe_avail) break;
    } else {
      to_proc = sqes < cqe_avail ? sqes : cqe_avail;
      if (ring->io_depth < 0) {
        int iod = -ring->io_depth;
        if (to_proc > iod) {
          to_proc = iod;
        } else if (to_proc < iod && ring->timeout_ms) {
          if (!ring->has_last_check) {
            clock_gettime(CLOCK_MONOTONIC, &ring->last_check);
            ring->has_last_check = true;
            break;
          } else if (ms_since(&ring->last_check) < ring->timeout_ms) {
            break;
          }
        }
        ring->has_last_check = false;
      }
    }
    if (to_proc <= 0) break;
    trace("batch %d", to_proc);
    for (int i = 0; i < to_proc; i++) {
      struct sio *io = oldest(ring, QUEUED);
      io->result = run_io(ring, io);
      io->state = DONE;
      io->seq = ring->next_seq++; /* completion order */
    }
    served = 1;
  }
  return served;
}

int hf3fs_wait_for_ios(const struct hf3fs_ior *ior, struct hf3fs_cqe *cqes, int cqec, int min_results,
                       const struct timespec *abs_timeout) {
  trace("wait_for_ios %d %d", cqec, min_results);
  if (cqec <= 0 || !ior || !ior->iorh) return -EINVAL;
  if (min_results > cqec) min_results = cqec;
  struct ring *ring = ior->iorh;
  int expected = 0;
  if (!atomic_compare_exchange_strong(&ring->waiting, &expected, 1)) return -EBUSY;
  int filled = 0, result;
  for (;;) {
    progress(ring);
    struct sio *io;
    int reaped = 0;
    while (filled < cqec && (io = oldest(ring, DONE))) {
      cqes[filled].index = (int32_t)(io - ring->ios);
      cqes[filled].reserved = 0;
      cqes[filled].result = io->result;
      cqes[filled].userdata = io->userdata;
      io->state = FREE;
      filled++;
      reaped++;
    }
    if (filled >= cqec) {
      result = filled;
      break;
    }
    if (reaped) continue;
    if (filled >= min_results) {
      result = filled;
      break;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (abs_timeout && (now.tv_sec > abs_timeout->tv_sec ||
                        (now.tv_sec == abs_timeout->tv_sec && now.tv_nsec >= abs_timeout->tv_nsec))) {
      result = filled;
      break;
    }
    /* Nothing can complete without more ios (io_depth > 0 short of a batch, or none queued). */
    int queued = count_state(ring, QUEUED);
    bool stuck = queued == 0 || (ring->io_depth > 0 && queued < ring->io_depth);
    if (stuck && !abs_timeout) {
      result = -EDEADLK;
      break;
    }
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  atomic_store(&ring->waiting, 0);
  return result;
}
