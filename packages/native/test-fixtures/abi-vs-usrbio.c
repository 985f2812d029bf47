/*
 * Compile-time check that the addon's own declarations of the 3FS USRBIO structs
 * (csrc/abi.h) lay out every field where 3FS's hf3fs_usrbio.h does (as declared
 * independently in hf3fs-usrbio-decls.h). Compiled by the tests; it has no code.
 */
#include <stddef.h>

#include "../csrc/abi.h"
#include "hf3fs-usrbio-decls.h"

#define SAME(addon, real, field)                                                               \
  _Static_assert(offsetof(struct addon, field) == offsetof(struct real, field), #real "." #field); \
  _Static_assert(sizeof(((struct addon *)0)->field) == sizeof(((struct real *)0)->field), #real "." #field " size")

SAME(tk_hf3fs_iov, hf3fs_iov, base);
SAME(tk_hf3fs_iov, hf3fs_iov, iovh);
SAME(tk_hf3fs_iov, hf3fs_iov, id);
SAME(tk_hf3fs_iov, hf3fs_iov, mount_point);
SAME(tk_hf3fs_iov, hf3fs_iov, size);
SAME(tk_hf3fs_iov, hf3fs_iov, block_size);
SAME(tk_hf3fs_iov, hf3fs_iov, numa);
_Static_assert(sizeof(struct tk_hf3fs_iov) == sizeof(struct hf3fs_iov), "hf3fs_iov size");
SAME(tk_hf3fs_ior, hf3fs_ior, iov);
SAME(tk_hf3fs_ior, hf3fs_ior, iorh);
SAME(tk_hf3fs_ior, hf3fs_ior, mount_point);
SAME(tk_hf3fs_ior, hf3fs_ior, for_read);
SAME(tk_hf3fs_ior, hf3fs_ior, io_depth);
SAME(tk_hf3fs_ior, hf3fs_ior, priority);
SAME(tk_hf3fs_ior, hf3fs_ior, timeout);
SAME(tk_hf3fs_ior, hf3fs_ior, flags);
_Static_assert(sizeof(struct tk_hf3fs_ior) == sizeof(struct hf3fs_ior), "hf3fs_ior size");
SAME(tk_hf3fs_cqe, hf3fs_cqe, index);
SAME(tk_hf3fs_cqe, hf3fs_cqe, reserved);
SAME(tk_hf3fs_cqe, hf3fs_cqe, result);
SAME(tk_hf3fs_cqe, hf3fs_cqe, userdata);
_Static_assert(sizeof(struct tk_hf3fs_cqe) == sizeof(struct hf3fs_cqe), "hf3fs_cqe size");
