/*
 * Our own declarations of the parts of the CUDA driver API, cuFile and the 3FS
 * USRBIO client that tierkit calls. The libraries are opened with dlopen at run
 * time, so the addon builds where none of them (nor their headers) exist. The
 * layouts below are ABI facts of x86-64/aarch64 Linux; the static asserts at the
 * end pin them, and test/abi-check.cc compares them with the real headers where
 * those can be found.
 *
 * Plain C so the 3FS stand-in library used by the tests can include it too.
 */
#ifndef TIERKIT_ABI_H
#define TIERKIT_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CUDA driver (libcuda.so.1) ---- */
typedef int tk_CUresult; /* enum cudaError_enum: 0 = CUDA_SUCCESS */
typedef int tk_CUdevice;
typedef struct tk_CUctx_st *tk_CUcontext;
typedef unsigned long long tk_CUdeviceptr; /* CUdeviceptr_v2 on 64-bit */

#define TK_CU_POINTER_ATTRIBUTE_MEMORY_TYPE 2
#define TK_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL 9
#define TK_CU_MEMORYTYPE_HOST 1
#define TK_CU_MEMORYTYPE_DEVICE 2

typedef tk_CUresult (*tk_cuInit_t)(unsigned int);
typedef tk_CUresult (*tk_cuDeviceGetCount_t)(int *);
typedef tk_CUresult (*tk_cuDeviceGet_t)(tk_CUdevice *, int);
typedef tk_CUresult (*tk_cuDeviceGetName_t)(char *, int, tk_CUdevice);
typedef tk_CUresult (*tk_cuDeviceTotalMem_t)(size_t *, tk_CUdevice);
typedef tk_CUresult (*tk_cuDevicePrimaryCtxRetain_t)(tk_CUcontext *, tk_CUdevice);
typedef tk_CUresult (*tk_cuCtxSetCurrent_t)(tk_CUcontext);
typedef tk_CUresult (*tk_cuMemAlloc_t)(tk_CUdeviceptr *, size_t);
typedef tk_CUresult (*tk_cuMemFree_t)(tk_CUdeviceptr);
typedef tk_CUresult (*tk_cuMemcpyHtoD_t)(tk_CUdeviceptr, const void *, size_t);
typedef tk_CUresult (*tk_cuMemcpyDtoH_t)(void *, tk_CUdeviceptr, size_t);
typedef tk_CUresult (*tk_cuMemsetD8_t)(tk_CUdeviceptr, unsigned char, size_t);
typedef tk_CUresult (*tk_cuPointerGetAttribute_t)(void *, int, tk_CUdeviceptr);
typedef tk_CUresult (*tk_cuGetErrorName_t)(tk_CUresult, const char **);

/* ---- cuFile (libcufile.so.0) ---- */
#define TK_CUFILEOP_BASE_ERR 5000
#define TK_CU_FILE_SUCCESS 0
#define TK_CU_FILE_CUDA_DRIVER_ERROR 5011
#define TK_CU_FILE_INTERNAL_ERROR 5030
#define TK_CU_FILE_HANDLE_TYPE_OPAQUE_FD 1

typedef int tk_CUfileOpError; /* enum CUfileOpError */

typedef struct tk_CUfileError {
  tk_CUfileOpError err; /* cuFile status */
  tk_CUresult cu_err;   /* CUDA driver status, when err is CU_FILE_CUDA_DRIVER_ERROR */
} tk_CUfileError_t;

typedef struct tk_CUfileDescr {
  int type; /* enum CUfileFileHandleType */
  union {
    int fd;
    void *handle;
  } handle;
  const void *fs_ops; /* const CUfileFSOps_t *: NULL for kernel file systems */
} tk_CUfileDescr_t;

typedef void *tk_CUfileHandle_t;

typedef tk_CUfileError_t (*tk_cuFileDriverOpen_t)(void);
typedef tk_CUfileError_t (*tk_cuFileDriverClose_t)(void);
typedef tk_CUfileError_t (*tk_cuFileHandleRegister_t)(tk_CUfileHandle_t *, tk_CUfileDescr_t *);
typedef void (*tk_cuFileHandleDeregister_t)(tk_CUfileHandle_t);
typedef tk_CUfileError_t (*tk_cuFileBufRegister_t)(const void *, size_t, int);
typedef tk_CUfileError_t (*tk_cuFileBufDeregister_t)(const void *);
typedef ssize_t (*tk_cuFileRead_t)(tk_CUfileHandle_t, void *, size_t, off_t, off_t);
typedef ssize_t (*tk_cuFileWrite_t)(tk_CUfileHandle_t, const void *, size_t, off_t, off_t);
typedef tk_CUfileError_t (*tk_cuFileGetVersion_t)(int *);

/* ---- 3FS USRBIO (libhf3fs_api_shared.so) ---- */
struct tk_hf3fs_iov {
  uint8_t *base;
  void *iovh;
  char id[16];
  char mount_point[256];
  size_t size;
  size_t block_size;
  int numa;
};

struct tk_hf3fs_ior {
  struct tk_hf3fs_iov iov;
  void *iorh;
  char mount_point[256];
  bool for_read;
  /* > 0: the io worker takes exactly io_depth ios at a time; 0: all prepared ios ASAP;
     < 0: ASAP but at most -io_depth at a time. */
  int io_depth;
  int priority;
  int timeout;
  uint64_t flags;
};

struct tk_hf3fs_cqe {
  int32_t index;
  int32_t reserved;
  int64_t result; /* bytes, or -errno */
  const void *userdata;
};

typedef bool (*tk_hf3fs_is_hf3fs_t)(int);
typedef int (*tk_hf3fs_extract_mount_point_t)(char *, int, const char *);
typedef int (*tk_hf3fs_iovcreate_t)(struct tk_hf3fs_iov *, const char *, size_t, size_t, int);
typedef void (*tk_hf3fs_iovdestroy_t)(struct tk_hf3fs_iov *);
typedef int (*tk_hf3fs_iorcreate4_t)(struct tk_hf3fs_ior *, const char *, int, bool, int, int, int, uint64_t);
typedef void (*tk_hf3fs_iordestroy_t)(struct tk_hf3fs_ior *);
/* Returns <= 0 on success and a POSITIVE errno on failure (unlike the others). */
typedef int (*tk_hf3fs_reg_fd_t)(int, uint64_t);
typedef void (*tk_hf3fs_dereg_fd_t)(int);
/* Returns the io index (>= 0) or -errno. Not thread safe: one preparing thread per ring. */
typedef int (*tk_hf3fs_prep_io_t)(const struct tk_hf3fs_ior *, const struct tk_hf3fs_iov *, bool, void *, int,
                                  size_t, uint64_t, const void *);
typedef int (*tk_hf3fs_submit_ios_t)(const struct tk_hf3fs_ior *);
typedef int (*tk_hf3fs_wait_for_ios_t)(const struct tk_hf3fs_ior *, struct tk_hf3fs_cqe *, int, int,
                                       const struct timespec *);

#ifdef __cplusplus
}
#endif

/* Layout checks: a wrong size here would corrupt memory inside the real libraries. */
#if defined(__cplusplus)
#define TK_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define TK_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif
#if defined(__LP64__)
TK_STATIC_ASSERT(sizeof(tk_CUfileError_t) == 8, "CUfileError_t is two 32-bit enums");
TK_STATIC_ASSERT(sizeof(tk_CUfileDescr_t) == 24, "CUfileDescr_t is 24 bytes on LP64");
TK_STATIC_ASSERT(offsetof(tk_CUfileDescr_t, handle) == 8, "CUfileDescr_t.handle at 8");
TK_STATIC_ASSERT(offsetof(tk_CUfileDescr_t, fs_ops) == 16, "CUfileDescr_t.fs_ops at 16");
TK_STATIC_ASSERT(sizeof(tk_CUdeviceptr) == 8, "CUdeviceptr is 64-bit");
TK_STATIC_ASSERT(sizeof(struct tk_hf3fs_iov) == 312, "hf3fs_iov is 312 bytes");
TK_STATIC_ASSERT(offsetof(struct tk_hf3fs_iov, size) == 288, "hf3fs_iov.size at 288");
TK_STATIC_ASSERT(offsetof(struct tk_hf3fs_iov, numa) == 304, "hf3fs_iov.numa at 304");
TK_STATIC_ASSERT(sizeof(struct tk_hf3fs_ior) == 600, "hf3fs_ior is 600 bytes");
TK_STATIC_ASSERT(offsetof(struct tk_hf3fs_ior, iorh) == 312, "hf3fs_ior.iorh at 312");
TK_STATIC_ASSERT(offsetof(struct tk_hf3fs_ior, for_read) == 576, "hf3fs_ior.for_read at 576");
TK_STATIC_ASSERT(offsetof(struct tk_hf3fs_ior, io_depth) == 580, "hf3fs_ior.io_depth at 580");
TK_STATIC_ASSERT(offsetof(struct tk_hf3fs_ior, flags) == 592, "hf3fs_ior.flags at 592");
TK_STATIC_ASSERT(sizeof(struct tk_hf3fs_cqe) == 24, "hf3fs_cqe is 24 bytes");
TK_STATIC_ASSERT(offsetof(struct tk_hf3fs_cqe, result) == 8, "hf3fs_cqe.result at 8");
#endif

#endif /* TIERKIT_ABI_H */
