// tierkit native addon. Everything vendor-specific is reached through dlopen so
// that this file compiles and loads on a machine with no GPU, no cuFile and no
// 3FS client; `capabilities()` says what was found and why not.
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <napi.h>

#include "abi.h"
#include "crc32c_js.h"

namespace {

// ---------------------------------------------------------------- errors

struct ErrInfo {
  bool failed = false;
  std::string message;
  std::string code;  // CUDA_ERROR, CUFILE_ERROR, ERRNO, UNAVAILABLE, INVALID
  int cufileCode = 0;
  int cudaCode = 0;
  int errnum = 0;
};

const char *CufileName(int code) {
  switch (code) {
    case 0: return "CU_FILE_SUCCESS";
    case 5001: return "CU_FILE_DRIVER_NOT_INITIALIZED";
    case 5002: return "CU_FILE_DRIVER_INVALID_PROPS";
    case 5003: return "CU_FILE_DRIVER_UNSUPPORTED_LIMIT";
    case 5004: return "CU_FILE_DRIVER_VERSION_MISMATCH";
    case 5005: return "CU_FILE_DRIVER_VERSION_READ_ERROR";
    case 5006: return "CU_FILE_DRIVER_CLOSING";
    case 5007: return "CU_FILE_PLATFORM_NOT_SUPPORTED";
    case 5008: return "CU_FILE_IO_NOT_SUPPORTED";
    case 5009: return "CU_FILE_DEVICE_NOT_SUPPORTED";
    case 5010: return "CU_FILE_NVFS_DRIVER_ERROR";
    case 5011: return "CU_FILE_CUDA_DRIVER_ERROR";
    case 5012: return "CU_FILE_CUDA_POINTER_INVALID";
    case 5013: return "CU_FILE_CUDA_MEMORY_TYPE_INVALID";
    case 5014: return "CU_FILE_CUDA_POINTER_RANGE_ERROR";
    case 5015: return "CU_FILE_CUDA_CONTEXT_MISMATCH";
    case 5016: return "CU_FILE_INVALID_MAPPING_SIZE";
    case 5017: return "CU_FILE_INVALID_MAPPING_RANGE";
    case 5018: return "CU_FILE_INVALID_FILE_TYPE";
    case 5019: return "CU_FILE_INVALID_FILE_OPEN_FLAG";
    case 5020: return "CU_FILE_DIO_NOT_SET";
    case 5022: return "CU_FILE_INVALID_VALUE";
    case 5023: return "CU_FILE_MEMORY_ALREADY_REGISTERED";
    case 5024: return "CU_FILE_MEMORY_NOT_REGISTERED";
    case 5025: return "CU_FILE_PERMISSION_DENIED";
    case 5026: return "CU_FILE_DRIVER_ALREADY_OPEN";
    case 5027: return "CU_FILE_HANDLE_NOT_REGISTERED";
    case 5028: return "CU_FILE_HANDLE_ALREADY_REGISTERED";
    case 5029: return "CU_FILE_DEVICE_NOT_FOUND";
    case 5030: return "CU_FILE_INTERNAL_ERROR";
    case 5031: return "CU_FILE_GETNEWFD_FAILED";
    case 5033: return "CU_FILE_NVFS_SETUP_ERROR";
    case 5034: return "CU_FILE_IO_DISABLED";
    case 5035: return "CU_FILE_BATCH_SUBMIT_FAILED";
    case 5036: return "CU_FILE_GPU_MEMORY_PINNING_FAILED";
    case 5037: return "CU_FILE_BATCH_FULL";
    case 5038: return "CU_FILE_ASYNC_NOT_SUPPORTED";
    case 5039: return "CU_FILE_INTERNAL_BATCH_SETUP_ERROR";
    case 5040: return "CU_FILE_INTERNAL_BATCH_SUBMIT_ERROR";
    case 5041: return "CU_FILE_INTERNAL_BATCH_GETSTATUS_ERROR";
    case 5042: return "CU_FILE_INTERNAL_BATCH_CANCEL_ERROR";
    case 5043: return "CU_FILE_NOMEM_ERROR";
    case 5044: return "CU_FILE_IO_ERROR";
    case 5045: return "CU_FILE_INTERNAL_BUF_REGISTER_ERROR";
    case 5046: return "CU_FILE_HASH_OPR_ERROR";
    case 5047: return "CU_FILE_INVALID_CONTEXT_ERROR";
    case 5048: return "CU_FILE_NVFS_INTERNAL_DRIVER_ERROR";
    case 5049: return "CU_FILE_BATCH_NOCOMPAT_ERROR";
    case 5050: return "CU_FILE_IO_MAX_ERROR";
    default: return "CU_FILE_UNKNOWN_ERROR";
  }
}

Napi::Error MakeError(Napi::Env env, const ErrInfo &e) {
  Napi::Error err = Napi::Error::New(env, e.message);
  Napi::Object o = err.Value();
  o.Set("code", e.code.empty() ? "NATIVE_ERROR" : e.code);
  if (e.cufileCode != 0) {
    o.Set("cufileCode", e.cufileCode);
    o.Set("cufileName", CufileName(e.cufileCode));
  }
  if (e.cudaCode != 0) o.Set("cudaCode", e.cudaCode);
  if (e.errnum != 0) {
    o.Set("errno", e.errnum);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    const char *name = strerrorname_np(e.errnum);
    if (name) o.Set("errnoName", name);
#endif
  }
  return err;
}

ErrInfo ErrnoInfo(const std::string &what, int errnum) {
  ErrInfo e;
  e.failed = true;
  e.code = "ERRNO";
  e.errnum = errnum;
  e.message = what + ": " + strerror(errnum);
  return e;
}

[[noreturn]] void Throw(Napi::Env env, const ErrInfo &e) { throw MakeError(env, e); }

void ThrowUnavailable(Napi::Env env, const std::string &msg) {
  ErrInfo e;
  e.failed = true;
  e.code = "UNAVAILABLE";
  e.message = msg;
  Throw(env, e);
}

void ThrowInvalid(Napi::Env env, const std::string &msg) {
  ErrInfo e;
  e.failed = true;
  e.code = "INVALID";
  e.message = msg;
  Throw(env, e);
}

// ---------------------------------------------------------------- dlopen

struct Lib {
  void *handle = nullptr;
  bool tried = false;
  std::string path;
  std::string reason;
};

template <typename T>
bool Sym(Lib &lib, T &out, const char *name) {
  out = reinterpret_cast<T>(dlsym(lib.handle, name));
  if (out == nullptr) {
    lib.reason = std::string("symbol ") + name + " not found in " + lib.path;
    return false;
  }
  return true;
}

bool Open(Lib &lib, const std::string &path) {
  lib.tried = true;
  lib.path = path;
  // RTLD_LOCAL: the vendor libraries' symbols must not leak into other addons.
  lib.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib.handle == nullptr) {
    const char *msg = dlerror();
    lib.reason = msg ? msg : ("dlopen failed for " + path);
    return false;
  }
  return true;
}

void Close(Lib &lib) {
  if (lib.handle) dlclose(lib.handle);
  lib.handle = nullptr;
}

struct CudaApi {
  Lib lib;
  bool ok = false;
  int deviceCount = 0;
  std::vector<tk_CUcontext> contexts;
  std::mutex mu;
  tk_cuInit_t cuInit;
  tk_cuDeviceGetCount_t cuDeviceGetCount;
  tk_cuDeviceGet_t cuDeviceGet;
  tk_cuDeviceGetName_t cuDeviceGetName;
  tk_cuDeviceTotalMem_t cuDeviceTotalMem;
  tk_cuDevicePrimaryCtxRetain_t cuDevicePrimaryCtxRetain;
  tk_cuCtxSetCurrent_t cuCtxSetCurrent;
  tk_cuMemAlloc_t cuMemAlloc;
  tk_cuMemFree_t cuMemFree;
  tk_cuMemcpyHtoD_t cuMemcpyHtoD;
  tk_cuMemcpyDtoH_t cuMemcpyDtoH;
  tk_cuMemsetD8_t cuMemsetD8;
  tk_cuPointerGetAttribute_t cuPointerGetAttribute;
  tk_cuGetErrorName_t cuGetErrorName;
} g_cuda;

struct CufileApi {
  Lib lib;
  bool ok = false;
  tk_cuFileDriverOpen_t cuFileDriverOpen;
  tk_cuFileDriverClose_t cuFileDriverClose;
  tk_cuFileHandleRegister_t cuFileHandleRegister;
  tk_cuFileHandleDeregister_t cuFileHandleDeregister;
  tk_cuFileBufRegister_t cuFileBufRegister;
  tk_cuFileBufDeregister_t cuFileBufDeregister;
  tk_cuFileRead_t cuFileRead;
  tk_cuFileWrite_t cuFileWrite;
  tk_cuFileGetVersion_t cuFileGetVersion;  // optional: older releases lack it
} g_cufile;

struct Hf3fsApi {
  Lib lib;
  bool ok = false;
  tk_hf3fs_is_hf3fs_t is_hf3fs;
  tk_hf3fs_extract_mount_point_t extract_mount_point;
  tk_hf3fs_iovcreate_t iovcreate;
  tk_hf3fs_iovdestroy_t iovdestroy;
  tk_hf3fs_iorcreate4_t iorcreate4;
  tk_hf3fs_iordestroy_t iordestroy;
  tk_hf3fs_reg_fd_t reg_fd;
  tk_hf3fs_dereg_fd_t dereg_fd;
  tk_hf3fs_prep_io_t prep_io;
  tk_hf3fs_submit_ios_t submit_ios;
  tk_hf3fs_wait_for_ios_t wait_for_ios;
} g_hf3fs;

std::string CudaErrName(tk_CUresult r) {
  const char *name = nullptr;
  if (g_cuda.cuGetErrorName && g_cuda.cuGetErrorName(r, &name) == 0 && name) return name;
  return "CUDA_ERROR_" + std::to_string(r);
}

ErrInfo CudaErr(const std::string &what, tk_CUresult r) {
  ErrInfo e;
  e.failed = true;
  e.code = "CUDA_ERROR";
  e.cudaCode = r;
  e.message = what + " failed: " + CudaErrName(r) + " (" + std::to_string(r) + ")";
  return e;
}

ErrInfo CufileErr(const std::string &what, tk_CUfileError_t st) {
  ErrInfo e;
  e.failed = true;
  e.code = "CUFILE_ERROR";
  e.cufileCode = st.err;
  e.cudaCode = st.cu_err;
  e.message = what + " failed: " + CufileName(st.err) + " (" + std::to_string(st.err) + ")";
  if (st.err == TK_CU_FILE_CUDA_DRIVER_ERROR && st.cu_err != 0) e.message += ", CUDA " + CudaErrName(st.cu_err);
  return e;
}

bool LoadCuda(const std::string &path) {
  CudaApi &c = g_cuda;
  if (c.lib.tried) return c.ok;
  if (!Open(c.lib, path)) return false;
  bool all = Sym(c.lib, c.cuInit, "cuInit") && Sym(c.lib, c.cuDeviceGetCount, "cuDeviceGetCount") &&
             Sym(c.lib, c.cuDeviceGet, "cuDeviceGet") && Sym(c.lib, c.cuDeviceGetName, "cuDeviceGetName") &&
             Sym(c.lib, c.cuDeviceTotalMem, "cuDeviceTotalMem_v2") &&
             Sym(c.lib, c.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain") &&
             Sym(c.lib, c.cuCtxSetCurrent, "cuCtxSetCurrent") && Sym(c.lib, c.cuMemAlloc, "cuMemAlloc_v2") &&
             Sym(c.lib, c.cuMemFree, "cuMemFree_v2") && Sym(c.lib, c.cuMemcpyHtoD, "cuMemcpyHtoD_v2") &&
             Sym(c.lib, c.cuMemcpyDtoH, "cuMemcpyDtoH_v2") && Sym(c.lib, c.cuMemsetD8, "cuMemsetD8_v2") &&
             Sym(c.lib, c.cuPointerGetAttribute, "cuPointerGetAttribute") &&
             Sym(c.lib, c.cuGetErrorName, "cuGetErrorName");
  if (!all) {
    Close(c.lib);
    return false;
  }
  tk_CUresult r = c.cuInit(0);
  if (r != 0) {
    c.lib.reason = "cuInit failed: " + CudaErrName(r) + " (no usable GPU or driver)";
    return false;
  }
  r = c.cuDeviceGetCount(&c.deviceCount);
  if (r != 0 || c.deviceCount <= 0) {
    c.lib.reason = r != 0 ? "cuDeviceGetCount failed: " + CudaErrName(r) : "the CUDA driver sees no device";
    return false;
  }
  c.contexts.assign(c.deviceCount, nullptr);
  c.ok = true;
  return true;
}

bool LoadCufile(const std::string &path) {
  CufileApi &f = g_cufile;
  if (f.lib.tried) return f.ok;
  if (!Open(f.lib, path)) return false;
  bool all = Sym(f.lib, f.cuFileDriverOpen, "cuFileDriverOpen") &&
             Sym(f.lib, f.cuFileDriverClose, "cuFileDriverClose_v2") &&
             Sym(f.lib, f.cuFileHandleRegister, "cuFileHandleRegister") &&
             Sym(f.lib, f.cuFileHandleDeregister, "cuFileHandleDeregister") &&
             Sym(f.lib, f.cuFileBufRegister, "cuFileBufRegister") &&
             Sym(f.lib, f.cuFileBufDeregister, "cuFileBufDeregister") && Sym(f.lib, f.cuFileRead, "cuFileRead") &&
             Sym(f.lib, f.cuFileWrite, "cuFileWrite");
  if (!all) {
    // Older releases export only the unversioned close.
    if (f.cuFileDriverOpen && !f.cuFileDriverClose) {
      f.lib.reason.clear();
      all = Sym(f.lib, f.cuFileDriverClose, "cuFileDriverClose") &&
            Sym(f.lib, f.cuFileHandleRegister, "cuFileHandleRegister") &&
            Sym(f.lib, f.cuFileHandleDeregister, "cuFileHandleDeregister") &&
            Sym(f.lib, f.cuFileBufRegister, "cuFileBufRegister") &&
            Sym(f.lib, f.cuFileBufDeregister, "cuFileBufDeregister") && Sym(f.lib, f.cuFileRead, "cuFileRead") &&
            Sym(f.lib, f.cuFileWrite, "cuFileWrite");
    }
    if (!all) {
      Close(f.lib);
      return false;
    }
  }
  f.cuFileGetVersion = reinterpret_cast<tk_cuFileGetVersion_t>(dlsym(f.lib.handle, "cuFileGetVersion"));
  f.ok = true;
  return true;
}

bool LoadHf3fs(const std::string &path) {
  Hf3fsApi &h = g_hf3fs;
  if (h.lib.tried) return h.ok;
  if (!Open(h.lib, path)) return false;
  bool all = Sym(h.lib, h.is_hf3fs, "hf3fs_is_hf3fs") &&
             Sym(h.lib, h.extract_mount_point, "hf3fs_extract_mount_point") &&
             Sym(h.lib, h.iovcreate, "hf3fs_iovcreate") && Sym(h.lib, h.iovdestroy, "hf3fs_iovdestroy") &&
             Sym(h.lib, h.iorcreate4, "hf3fs_iorcreate4") && Sym(h.lib, h.iordestroy, "hf3fs_iordestroy") &&
             Sym(h.lib, h.reg_fd, "hf3fs_reg_fd") && Sym(h.lib, h.dereg_fd, "hf3fs_dereg_fd") &&
             Sym(h.lib, h.prep_io, "hf3fs_prep_io") && Sym(h.lib, h.submit_ios, "hf3fs_submit_ios") &&
             Sym(h.lib, h.wait_for_ios, "hf3fs_wait_for_ios");
  if (!all) {
    Close(h.lib);
    return false;
  }
  h.ok = true;
  return true;
}

Napi::Object LibStatus(Napi::Env env, const Lib &lib, bool ok) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", ok);
  o.Set("tried", lib.tried);
  o.Set("path", lib.path);
  if (!ok && lib.tried) o.Set("reason", lib.reason);
  return o;
}

std::string ArgPath(const Napi::CallbackInfo &info, const char *dflt) {
  if (info.Length() > 0 && info[0].IsString()) return info[0].As<Napi::String>().Utf8Value();
  return dflt;
}

Napi::Value JsLoadCuda(const Napi::CallbackInfo &info) {
  bool ok = LoadCuda(ArgPath(info, "libcuda.so.1"));
  Napi::Object o = LibStatus(info.Env(), g_cuda.lib, ok);
  if (ok) o.Set("deviceCount", g_cuda.deviceCount);
  return o;
}

Napi::Value JsLoadCufile(const Napi::CallbackInfo &info) {
  bool ok = LoadCufile(ArgPath(info, "libcufile.so.0"));
  Napi::Object o = LibStatus(info.Env(), g_cufile.lib, ok);
  if (ok && g_cufile.cuFileGetVersion) {
    int v = 0;
    if (g_cufile.cuFileGetVersion(&v).err == 0) o.Set("version", v);
  }
  return o;
}

Napi::Value JsLoadHf3fs(const Napi::CallbackInfo &info) {
  bool ok = LoadHf3fs(ArgPath(info, "libhf3fs_api_shared.so"));
  return LibStatus(info.Env(), g_hf3fs.lib, ok);
}

// ---------------------------------------------------------------- async helper

// Runs `work` on libuv's pool and settles a promise with `done` (or the error).
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, std::function<ErrInfo()> work, std::function<Napi::Value(Napi::Env)> done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        done_(std::move(done)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Keep(Napi::Value v) { keep_.push_back(Napi::Persistent(v)); }

 protected:
  void Execute() override { err_ = work_(); }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    if (err_.failed) {
      deferred_.Reject(MakeError(Env(), err_).Value());
    } else {
      deferred_.Resolve(done_ ? done_(Env()) : Env().Undefined());
    }
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<ErrInfo()> work_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::vector<Napi::Reference<Napi::Value>> keep_;
  ErrInfo err_;
};

Napi::Value RunJob(Napi::Env env, std::function<ErrInfo()> work, std::function<Napi::Value(Napi::Env)> done,
                   std::vector<Napi::Value> keep = {}) {
  Job *job = new Job(env, std::move(work), std::move(done));
  for (auto &v : keep) job->Keep(v);
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

// A typed array / Buffer / ArrayBuffer as (pointer, length).
struct HostView {
  uint8_t *data = nullptr;
  size_t length = 0;
};

HostView ViewOf(Napi::Env env, Napi::Value v) {
  HostView hv;
  if (v.IsTypedArray()) {
    // napi_get_typedarray_info, not ArrayBuffer().Data(): the latter refuses views of a SharedArrayBuffer.
    napi_typedarray_type type;
    size_t count = 0;
    void *data = nullptr;
    if (napi_get_typedarray_info(env, v, &type, &count, &data, nullptr, nullptr) != napi_ok) {
      ThrowInvalid(env, "could not read the typed array");
    }
    hv.data = static_cast<uint8_t *>(data);  // already at the view's byte offset
    hv.length = v.As<Napi::TypedArray>().ByteLength();
  } else if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    hv.data = static_cast<uint8_t *>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    hv.length = dv.ByteLength();
  } else if (v.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
    hv.data = static_cast<uint8_t *>(ab.Data());
    hv.length = ab.ByteLength();
  } else {
    ThrowInvalid(env, "expected a TypedArray, DataView or ArrayBuffer");
  }
  return hv;
}

uint64_t U64(Napi::Env env, Napi::Value v, const char *what) {
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowInvalid(env, std::string(what) + " does not fit in 64 bits");
    return x;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
      ThrowInvalid(env, std::string(what) + " must be a non-negative integer");
    }
    return static_cast<uint64_t>(d);
  }
  ThrowInvalid(env, std::string(what) + " must be a number or a bigint");
  return 0;
}

int32_t I32(Napi::Env env, Napi::Value v, const char *what) {
  if (!v.IsNumber()) ThrowInvalid(env, std::string(what) + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

// ---------------------------------------------------------------- CUDA

ErrInfo SetDevice(int device) {
  CudaApi &c = g_cuda;
  ErrInfo none;
  if (!c.ok) {
    ErrInfo e;
    e.failed = true;
    e.code = "UNAVAILABLE";
    e.message = "the CUDA driver is not loaded: " + c.lib.reason;
    return e;
  }
  if (device < 0 || device >= c.deviceCount) {
    ErrInfo e;
    e.failed = true;
    e.code = "INVALID";
    e.message = "no CUDA device " + std::to_string(device);
    return e;
  }
  tk_CUcontext ctx;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.contexts[device] == nullptr) {
      tk_CUdevice dev;
      tk_CUresult r = c.cuDeviceGet(&dev, device);
      if (r != 0) return CudaErr("cuDeviceGet", r);
      r = c.cuDevicePrimaryCtxRetain(&c.contexts[device], dev);
      if (r != 0) return CudaErr("cuDevicePrimaryCtxRetain", r);
    }
    ctx = c.contexts[device];
  }
  // Every thread (the JS thread, libuv's workers) must make the context current itself.
  tk_CUresult r = c.cuCtxSetCurrent(ctx);
  if (r != 0) return CudaErr("cuCtxSetCurrent", r);
  return none;
}

void SetDeviceOrThrow(Napi::Env env, int device) {
  ErrInfo e = SetDevice(device);
  if (e.failed) Throw(env, e);
}

Napi::Value JsCudaDeviceInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int device = I32(env, info[0], "device");
  SetDeviceOrThrow(env, device);
  tk_CUdevice dev;
  g_cuda.cuDeviceGet(&dev, device);
  char name[256] = {0};
  g_cuda.cuDeviceGetName(name, sizeof(name) - 1, dev);
  size_t total = 0;
  g_cuda.cuDeviceTotalMem(&total, dev);
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", device);
  o.Set("name", name);
  o.Set("totalMemory", static_cast<double>(total));
  return o;
}

Napi::Value JsCudaMalloc(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int device = I32(env, info[0], "device");
  uint64_t size = U64(env, info[1], "size");
  SetDeviceOrThrow(env, device);
  tk_CUdeviceptr p = 0;
  tk_CUresult r = g_cuda.cuMemAlloc(&p, size);
  if (r != 0) Throw(env, CudaErr("cuMemAlloc", r));
  return Napi::BigInt::New(env, static_cast<uint64_t>(p));
}

Napi::Value JsCudaFree(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int device = I32(env, info[0], "device");
  uint64_t p = U64(env, info[1], "pointer");
  SetDeviceOrThrow(env, device);
  tk_CUresult r = g_cuda.cuMemFree(p);
  if (r != 0) Throw(env, CudaErr("cuMemFree", r));
  return env.Undefined();
}

// cudaMemcpyHtoD(device, dstPtr, src): async.
Napi::Value JsCudaCopyToDevice(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int device = I32(env, info[0], "device");
  uint64_t dst = U64(env, info[1], "pointer");
  HostView src = ViewOf(env, info[2]);
  return RunJob(
      env,
      [=]() {
        ErrInfo e = SetDevice(device);
        if (e.failed) return e;
        tk_CUresult r = g_cuda.cuMemcpyHtoD(dst, src.data, src.length);
        return r != 0 ? CudaErr("cuMemcpyHtoD", r) : ErrInfo();
      },
      nullptr, {info[2]});
}

// cudaMemcpyDtoH(device, dst, srcPtr): async.
Napi::Value JsCudaCopyToHost(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int device = I32(env, info[0], "device");
  HostView dst = ViewOf(env, info[1]);
  uint64_t src = U64(env, info[2], "pointer");
  return RunJob(
      env,
      [=]() {
        ErrInfo e = SetDevice(device);
        if (e.failed) return e;
        tk_CUresult r = g_cuda.cuMemcpyDtoH(dst.data, src, dst.length);
        return r != 0 ? CudaErr("cuMemcpyDtoH", r) : ErrInfo();
      },
      nullptr, {info[1]});
}

Napi::Value JsCudaMemset(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int device = I32(env, info[0], "device");
  uint64_t p = U64(env, info[1], "pointer");
  int value = I32(env, info[2], "value");
  uint64_t n = U64(env, info[3], "size");
  SetDeviceOrThrow(env, device);
  tk_CUresult r = g_cuda.cuMemsetD8(p, static_cast<unsigned char>(value), n);
  if (r != 0) Throw(env, CudaErr("cuMemsetD8", r));
  return env.Undefined();
}

Napi::Value JsCudaPointerInfo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!g_cuda.ok) ThrowUnavailable(env, "the CUDA driver is not loaded: " + g_cuda.lib.reason);
  uint64_t p = U64(env, info[0], "pointer");
  unsigned int memType = 0;
  int ordinal = -1;
  tk_CUresult r = g_cuda.cuPointerGetAttribute(&memType, TK_CU_POINTER_ATTRIBUTE_MEMORY_TYPE, p);
  Napi::Object o = Napi::Object::New(env);
  if (r != 0) {
    o.Set("memoryType", "unregistered");
    return o;
  }
  g_cuda.cuPointerGetAttribute(&ordinal, TK_CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p);
  o.Set("memoryType", memType == TK_CU_MEMORYTYPE_DEVICE ? "device"
                      : memType == TK_CU_MEMORYTYPE_HOST ? "host"
                                                         : "other");
  o.Set("device", ordinal);
  return o;
}

// ---------------------------------------------------------------- cuFile

void RequireCufile(Napi::Env env) {
  if (!g_cufile.ok) ThrowUnavailable(env, "libcufile is not loaded: " + g_cufile.lib.reason);
}

Napi::Value JsCufileDriverOpen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireCufile(env);
  tk_CUfileError_t st = g_cufile.cuFileDriverOpen();
  if (st.err != 0) Throw(env, CufileErr("cuFileDriverOpen", st));
  return env.Undefined();
}

Napi::Value JsCufileDriverClose(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireCufile(env);
  tk_CUfileError_t st = g_cufile.cuFileDriverClose();
  if (st.err != 0) Throw(env, CufileErr("cuFileDriverClose", st));
  return env.Undefined();
}

Napi::Value JsCufileHandleRegister(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireCufile(env);
  int fd = I32(env, info[0], "fd");
  tk_CUfileDescr_t descr;
  memset(&descr, 0, sizeof(descr));
  descr.type = TK_CU_FILE_HANDLE_TYPE_OPAQUE_FD;
  descr.handle.fd = fd;
  tk_CUfileHandle_t fh = nullptr;
  tk_CUfileError_t st = g_cufile.cuFileHandleRegister(&fh, &descr);
  if (st.err != 0) Throw(env, CufileErr("cuFileHandleRegister", st));
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(fh)));
}

Napi::Value JsCufileHandleDeregister(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireCufile(env);
  uint64_t h = U64(env, info[0], "handle");
  g_cufile.cuFileHandleDeregister(reinterpret_cast<tk_CUfileHandle_t>(static_cast<uintptr_t>(h)));
  return env.Undefined();
}

Napi::Value JsCufileBufRegister(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireCufile(env);
  uint64_t p = U64(env, info[0], "pointer");
  uint64_t n = U64(env, info[1], "size");
  int flags = info.Length() > 2 ? I32(env, info[2], "flags") : 0;
  tk_CUfileError_t st = g_cufile.cuFileBufRegister(reinterpret_cast<const void *>(p), n, flags);
  if (st.err != 0) Throw(env, CufileErr("cuFileBufRegister", st));
  return env.Undefined();
}

Napi::Value JsCufileBufDeregister(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireCufile(env);
  uint64_t p = U64(env, info[0], "pointer");
  tk_CUfileError_t st = g_cufile.cuFileBufDeregister(reinterpret_cast<const void *>(p));
  if (st.err != 0) Throw(env, CufileErr("cuFileBufDeregister", st));
  return env.Undefined();
}

// cuFileRead/Write return bytes, -1 with errno set, or -CUfileOpError.
ErrInfo CufileIoResult(const char *what, ssize_t r, int savedErrno) {
  if (r >= 0) return ErrInfo();
  if (r == -1) return ErrnoInfo(what, savedErrno);
  tk_CUfileError_t st{static_cast<int>(-r), 0};
  return CufileErr(what, st);
}

// cufileIo(write, device, handle, pointer, size, fileOffset, bufferOffset) → Promise<number>
// device < 0: pointer is host memory (no context needed).
Napi::Value JsCufileIo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireCufile(env);
  bool write = info[0].ToBoolean().Value();
  int device = I32(env, info[1], "device");
  uint64_t h = U64(env, info[2], "handle");
  uint64_t p = U64(env, info[3], "pointer");
  uint64_t size = U64(env, info[4], "size");
  uint64_t fileOffset = U64(env, info[5], "fileOffset");
  uint64_t bufOffset = U64(env, info[6], "bufferOffset");
  auto result = std::make_shared<ssize_t>(0);
  std::vector<Napi::Value> keep;
  if (info.Length() > 7 && !info[7].IsUndefined()) keep.push_back(info[7]);  // a host buffer to keep alive
  return RunJob(
      env,
      [=]() {
        if (device >= 0) {
          ErrInfo e = SetDevice(device);
          if (e.failed) return e;
        }
        auto fh = reinterpret_cast<tk_CUfileHandle_t>(static_cast<uintptr_t>(h));
        ssize_t r = write ? g_cufile.cuFileWrite(fh, reinterpret_cast<const void *>(p), size, fileOffset, bufOffset)
                          : g_cufile.cuFileRead(fh, reinterpret_cast<void *>(p), size, fileOffset, bufOffset);
        int saved = errno;
        *result = r;
        return CufileIoResult(write ? "cuFileWrite" : "cuFileRead", r, saved);
      },
      [result](Napi::Env e) { return Napi::Number::New(e, static_cast<double>(*result)); }, keep);
}

// Host address of a typed array, for cuFile reads into host memory.
Napi::Value JsAddressOf(const Napi::CallbackInfo &info) {
  HostView v = ViewOf(info.Env(), info[0]);
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(v.data)));
}

// ---------------------------------------------------------------- 3FS USRBIO

struct IovBox {
  tk_hf3fs_iov iov;
  bool alive = false;
  ~IovBox() {
    if (alive && g_hf3fs.ok) g_hf3fs.iovdestroy(&iov);
  }
};

struct IorBox {
  tk_hf3fs_ior ior;
  bool alive = false;
  std::thread::id owner;  // USRBIO: prep_io is not thread safe, one preparing thread per ring
  ~IorBox() {
    if (alive && g_hf3fs.ok) g_hf3fs.iordestroy(&ior);
  }
};

void RequireHf3fs(Napi::Env env) {
  if (!g_hf3fs.ok) ThrowUnavailable(env, "the 3FS USRBIO library is not loaded: " + g_hf3fs.lib.reason);
}

std::shared_ptr<IovBox> IovOf(Napi::Env env, Napi::Value v) {
  if (!v.IsExternal()) ThrowInvalid(env, "expected an iov");
  auto box = *v.As<Napi::External<std::shared_ptr<IovBox>>>().Data();
  if (!box->alive) ThrowInvalid(env, "the iov was destroyed");
  return box;
}

std::shared_ptr<IorBox> IorOf(Napi::Env env, Napi::Value v) {
  if (!v.IsExternal()) ThrowInvalid(env, "expected an ior");
  auto box = *v.As<Napi::External<std::shared_ptr<IorBox>>>().Data();
  if (!box->alive) ThrowInvalid(env, "the ior was destroyed");
  return box;
}

Napi::Value JsHf3fsExtractMountPoint(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  std::string path = info[0].As<Napi::String>().Utf8Value();
  char buf[4096];
  int n = g_hf3fs.extract_mount_point(buf, sizeof(buf), path.c_str());
  if (n < 0) return env.Null();  // not on a 3FS mount
  if (n > static_cast<int>(sizeof(buf))) ThrowInvalid(env, "3FS mount point longer than 4096 bytes");
  return Napi::String::New(env, buf);
}

Napi::Value JsHf3fsIsHf3fs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  return Napi::Boolean::New(env, g_hf3fs.is_hf3fs(I32(env, info[0], "fd")));
}

// hf3fsIovCreate(mountPoint, size, blockSize, numa) → { iov, buffer }
Napi::Value JsHf3fsIovCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  std::string mount = info[0].As<Napi::String>().Utf8Value();
  uint64_t size = U64(env, info[1], "size");
  uint64_t block = U64(env, info[2], "blockSize");
  int numa = I32(env, info[3], "numa");
  auto box = std::make_shared<IovBox>();
  memset(&box->iov, 0, sizeof(box->iov));
  int r = g_hf3fs.iovcreate(&box->iov, mount.c_str(), size, block, numa);
  if (r < 0) Throw(env, ErrnoInfo("hf3fs_iovcreate", -r));
  box->alive = true;
  auto ext = Napi::External<std::shared_ptr<IovBox>>::New(env, new std::shared_ptr<IovBox>(box),
                                                             [](Napi::Env, std::shared_ptr<IovBox> *p) { delete p; });
  // The shared memory is handed to JS as an ArrayBuffer that keeps the iov alive.
  auto buffer = Napi::ArrayBuffer::New(env, box->iov.base, box->iov.size,
                                       [](Napi::Env, void *, std::shared_ptr<IovBox> *p) { delete p; },
                                       new std::shared_ptr<IovBox>(box));
  Napi::Object o = Napi::Object::New(env);
  o.Set("iov", ext);
  o.Set("buffer", buffer);
  return o;
}

// hf3fsIovDestroy(iov, buffer): detaches the buffer so no JS view outlives the memory.
Napi::Value JsHf3fsIovDestroy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto box = IovOf(env, info[0]);
  if (info.Length() > 1 && info[1].IsArrayBuffer()) {
    Napi::ArrayBuffer ab = info[1].As<Napi::ArrayBuffer>();
    if (!ab.IsDetached()) ab.Detach();
  }
  g_hf3fs.iovdestroy(&box->iov);
  box->alive = false;
  return env.Undefined();
}

// hf3fsIorCreate(mountPoint, entries, forRead, ioDepth, timeoutMs, numa, flags) → ior
Napi::Value JsHf3fsIorCreate(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  std::string mount = info[0].As<Napi::String>().Utf8Value();
  int entries = I32(env, info[1], "entries");
  bool forRead = info[2].ToBoolean().Value();
  int ioDepth = I32(env, info[3], "ioDepth");
  int timeout = I32(env, info[4], "timeout");
  int numa = I32(env, info[5], "numa");
  uint64_t flags = info.Length() > 6 ? U64(env, info[6], "flags") : 0;
  auto box = std::make_shared<IorBox>();
  memset(&box->ior, 0, sizeof(box->ior));
  int r = g_hf3fs.iorcreate4(&box->ior, mount.c_str(), entries, forRead, ioDepth, timeout, numa, flags);
  if (r < 0) Throw(env, ErrnoInfo("hf3fs_iorcreate4", -r));
  box->alive = true;
  box->owner = std::this_thread::get_id();
  return Napi::External<std::shared_ptr<IorBox>>::New(env, new std::shared_ptr<IorBox>(box),
                                                      [](Napi::Env, std::shared_ptr<IorBox> *p) { delete p; });
}

Napi::Value JsHf3fsIorDestroy(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  auto box = IorOf(env, info[0]);
  g_hf3fs.iordestroy(&box->ior);
  box->alive = false;
  return env.Undefined();
}

Napi::Value JsHf3fsRegFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  int fd = I32(env, info[0], "fd");
  uint64_t flags = info.Length() > 1 ? U64(env, info[1], "flags") : 0;
  int r = g_hf3fs.reg_fd(fd, flags);
  // The one call of the API that reports failure as a POSITIVE errno.
  if (r > 0) Throw(env, ErrnoInfo("hf3fs_reg_fd", r));
  return env.Undefined();
}

Napi::Value JsHf3fsDeregFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  g_hf3fs.dereg_fd(I32(env, info[0], "fd"));
  return env.Undefined();
}

// hf3fsPrepIo(ior, iov, read, iovOffset, fd, fileOffset, length, userdata) → io index
Napi::Value JsHf3fsPrepIo(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  auto ior = IorOf(env, info[0]);
  auto iov = IovOf(env, info[1]);
  if (ior->owner != std::this_thread::get_id()) ThrowInvalid(env, "an ior is prepared from one thread only");
  bool read = info[2].ToBoolean().Value();
  uint64_t iovOffset = U64(env, info[3], "iovOffset");
  int fd = I32(env, info[4], "fd");
  uint64_t fileOffset = U64(env, info[5], "fileOffset");
  uint64_t length = U64(env, info[6], "length");
  uint64_t userdata = info.Length() > 7 ? U64(env, info[7], "userdata") : 0;
  // Guard the shared buffer here too: a real client would write outside it silently.
  if (iovOffset > iov->iov.size || length > iov->iov.size - iovOffset) {
    ThrowInvalid(env, "io range lies outside the iov");
  }
  int r = g_hf3fs.prep_io(&ior->ior, &iov->iov, read, iov->iov.base + iovOffset, fd, fileOffset, length,
                          reinterpret_cast<const void *>(static_cast<uintptr_t>(userdata)));
  if (r < 0) Throw(env, ErrnoInfo("hf3fs_prep_io", -r));
  return Napi::Number::New(env, r);
}

Napi::Value JsHf3fsSubmitIos(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  auto ior = IorOf(env, info[0]);
  int r = g_hf3fs.submit_ios(&ior->ior);
  if (r < 0) Throw(env, ErrnoInfo("hf3fs_submit_ios", -r));
  return env.Undefined();
}

// hf3fsWaitForIos(ior, maxResults, minResults, timeoutMs) → Promise<{index,result,userdata}[]>
Napi::Value JsHf3fsWaitForIos(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  RequireHf3fs(env);
  auto ior = IorOf(env, info[0]);
  int maxResults = I32(env, info[1], "maxResults");
  int minResults = I32(env, info[2], "minResults");
  double timeoutMs = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : -1;
  if (maxResults <= 0 || minResults < 0 || minResults > maxResults) ThrowInvalid(env, "bad result counts");
  auto cqes = std::make_shared<std::vector<tk_hf3fs_cqe>>(maxResults);
  auto count = std::make_shared<int>(0);
  return RunJob(
      env,
      [=]() {
        timespec deadline;
        const timespec *dl = nullptr;
        if (timeoutMs >= 0) {
          clock_gettime(CLOCK_REALTIME, &deadline);
          long long ns = deadline.tv_nsec + static_cast<long long>(timeoutMs * 1e6);
          deadline.tv_sec += ns / 1000000000LL;
          deadline.tv_nsec = ns % 1000000000LL;
          dl = &deadline;
        }
        int r = g_hf3fs.wait_for_ios(&ior->ior, cqes->data(), maxResults, minResults, dl);
        if (r < 0) return ErrnoInfo("hf3fs_wait_for_ios", -r);
        *count = r;
        return ErrInfo();
      },
      [=](Napi::Env e) {
        Napi::Array out = Napi::Array::New(e, *count);
        for (int i = 0; i < *count; i++) {
          Napi::Object o = Napi::Object::New(e);
          o.Set("index", (*cqes)[i].index);
          o.Set("result", static_cast<double>((*cqes)[i].result));
          o.Set("userdata", static_cast<double>(reinterpret_cast<uintptr_t>((*cqes)[i].userdata)));
          out.Set(i, o);
        }
        return out;
      });
}

// ---------------------------------------------------------------- I/O pool

class Pool;

struct Batch {
  Napi::Promise::Deferred deferred;
  std::vector<Napi::Reference<Napi::Value>> keep;
  std::vector<double> results;
  std::atomic<size_t> left{0};
  std::mutex mu;
  ErrInfo err;
  explicit Batch(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

struct Task {
  Batch *batch;
  size_t index;
  int fd;
  uint8_t *ptr;
  size_t length;
  int64_t position;
  bool write;
};

// A fixed set of threads doing positioned reads and writes into memory the caller
// keeps alive; a batch settles one promise on the JS thread when its last task ends.
class Pool : public Napi::ObjectWrap<Pool> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Pool",
                       {InstanceMethod("run", &Pool::Run), InstanceMethod("close", &Pool::CloseJs),
                        InstanceAccessor("threads", &Pool::Threads, nullptr)});
  }

  explicit Pool(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Pool>(info) {
    Napi::Env env = info.Env();
    int n = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 4;
    if (n < 1 || n > 256) ThrowInvalid(env, "threads must be 1..256");
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo &) {}),
                                          "tierkit-io-pool", 0, 1);
    tsfn_.Unref(env);  // idle pools must not keep the process alive
    for (int i = 0; i < n; i++) threads_.emplace_back([this] { Loop(); });
  }

  ~Pool() override { Shutdown(); }

 private:
  Napi::Value Threads(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), static_cast<double>(threads_.size()));
  }

  // run(ops: [fd, view, position, write][]) → Promise<number[]> (bytes per op)
  Napi::Value Run(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (closed_) {
      ErrInfo e;
      e.failed = true;
      e.code = "CLOSED";
      e.message = "the I/O pool is closed";
      Throw(env, e);
    }
    if (!info[0].IsArray()) ThrowInvalid(env, "run expects an array of operations");
    Napi::Array ops = info[0].As<Napi::Array>();
    uint32_t n = ops.Length();
    auto *batch = new Batch(env);
    Napi::Promise promise = batch->deferred.Promise();
    std::vector<Task> tasks;
    tasks.reserve(n);
    try {
      for (uint32_t i = 0; i < n; i++) {
        Napi::Value opv = ops.Get(i);
        if (!opv.IsArray()) ThrowInvalid(env, "each operation is [fd, view, position, write]");
        Napi::Array op = opv.As<Napi::Array>();
        int fd = I32(env, op.Get(0u), "fd");
        Napi::Value view = op.Get(1u);
        HostView hv = ViewOf(env, view);
        uint64_t pos = U64(env, op.Get(2u), "position");
        bool write = op.Get(3u).ToBoolean().Value();
        batch->keep.push_back(Napi::Persistent(view));
        tasks.push_back(Task{batch, i, fd, hv.data, hv.length, static_cast<int64_t>(pos), write});
      }
    } catch (...) {
      delete batch;
      throw;
    }
    batch->results.assign(n, 0);
    if (n == 0) {
      batch->deferred.Resolve(Napi::Array::New(env, 0));
      delete batch;
      return promise;
    }
    batch->left = n;
    if (pending_++ == 0) tsfn_.Ref(env);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto &t : tasks) queue_.push_back(t);
    }
    cv_.notify_all();
    return promise;
  }

  Napi::Value CloseJs(const Napi::CallbackInfo &info) {
    Shutdown();
    return info.Env().Undefined();
  }

  void Shutdown() {
    if (closed_) return;
    closed_ = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto &t : threads_) t.join();  // workers drain the queue first
    threads_.clear();
    tsfn_.Release();
  }

  void Loop() {
    for (;;) {
      Task t;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        t = queue_.front();
        queue_.pop_front();
      }
      Execute(t);
    }
  }

  void Execute(const Task &t) {
    size_t done = 0;
    int err = 0;
    // Loop: pread/pwrite may move fewer bytes than asked; a read stops at end of file.
    while (done < t.length) {
      ssize_t r = t.write ? pwrite(t.fd, t.ptr + done, t.length - done, t.position + done)
                          : pread(t.fd, t.ptr + done, t.length - done, t.position + done);
      if (r < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    Batch *b = t.batch;
    b->results[t.index] = static_cast<double>(done);
    if (err != 0) {
      std::lock_guard<std::mutex> lock(b->mu);
      if (!b->err.failed) b->err = ErrnoInfo(t.write ? "pwrite" : "pread", err);
    }
    if (b->left.fetch_sub(1) == 1) {
      tsfn_.BlockingCall(b, [this](Napi::Env env, Napi::Function, Batch *batch) { Settle(env, batch); });
    }
  }

  void Settle(Napi::Env env, Batch *b) {
    Napi::HandleScope scope(env);
    if (b->err.failed) {
      b->deferred.Reject(MakeError(env, b->err).Value());
    } else {
      Napi::Array out = Napi::Array::New(env, b->results.size());
      for (size_t i = 0; i < b->results.size(); i++) out.Set(static_cast<uint32_t>(i), b->results[i]);
      b->deferred.Resolve(out);
    }
    delete b;
    if (--pending_ == 0 && !closed_) tsfn_.Unref(env);
  }

  std::vector<std::thread> threads_;
  std::deque<Task> queue_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool closed_ = false;
  size_t pending_ = 0;  // JS thread only
  Napi::ThreadSafeFunction tsfn_;
};

// alignedBuffer(size, alignment = 4096) → ArrayBuffer, for O_DIRECT I/O.
Napi::Value JsAlignedBuffer(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uint64_t size = U64(env, info[0], "size");
  uint64_t align = info.Length() > 1 ? U64(env, info[1], "alignment") : 4096;
  if (align < sizeof(void *) || (align & (align - 1)) != 0) ThrowInvalid(env, "alignment must be a power of two");
  void *p = nullptr;
  size_t bytes = size == 0 ? align : size;
  if (posix_memalign(&p, align, bytes) != 0) Throw(env, ErrnoInfo("posix_memalign", ENOMEM));
  memset(p, 0, bytes);
  return Napi::ArrayBuffer::New(env, p, size, [](Napi::Env, void *data) { free(data); });
}

// openFile(path, flags, mode) → fd; flags may include O_DIRECT (Linux).
Napi::Value JsOpenFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int flags = I32(env, info[1], "flags");
  int mode = info.Length() > 2 ? I32(env, info[2], "mode") : 0644;
  int fd = open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) Throw(env, ErrnoInfo("open " + path, errno));
  return Napi::Number::New(env, fd);
}

// readCached(fd, view, position): copies into `view` what the page cache already
// holds at `position`, never waiting for the disk (preadv2 with RWF_NOWAIT). Returns
// the bytes copied, short where the cached run ends, or -1 when its first page is
// not cached. A page-cache hit then costs a memcpy on the calling thread instead of
// a thread-pool round trip; anything else is for the caller's asynchronous path.
Napi::Value JsReadCached(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = I32(env, info[0], "fd");
  HostView v = ViewOf(env, info[1]);
  uint64_t position = U64(env, info[2], "position");
#ifdef RWF_NOWAIT
  struct iovec iov = {v.data, v.length};
  ssize_t n;
  do {
    n = preadv2(fd, &iov, 1, static_cast<off_t>(position), RWF_NOWAIT);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) return Napi::Number::New(env, static_cast<double>(n));
  if (errno == EAGAIN) return Napi::Number::New(env, -1);
  Throw(env, ErrnoInfo("preadv2", errno));
#else
  (void)fd;
  (void)v;
  (void)position;
  Throw(env, ErrnoInfo("preadv2", ENOSYS));
#endif
}

Napi::Value JsConstants(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#ifdef O_DIRECT
  o.Set("O_DIRECT", O_DIRECT);
#else
  o.Set("O_DIRECT", 0);
#endif
  o.Set("O_RDONLY", O_RDONLY);
  o.Set("O_WRONLY", O_WRONLY);
  o.Set("O_RDWR", O_RDWR);
  o.Set("O_CREAT", O_CREAT);
  o.Set("O_TRUNC", O_TRUNC);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("loadCuda", Napi::Function::New(env, JsLoadCuda));
  exports.Set("loadCufile", Napi::Function::New(env, JsLoadCufile));
  exports.Set("loadHf3fs", Napi::Function::New(env, JsLoadHf3fs));
  exports.Set("cudaDeviceInfo", Napi::Function::New(env, JsCudaDeviceInfo));
  exports.Set("cudaMalloc", Napi::Function::New(env, JsCudaMalloc));
  exports.Set("cudaFree", Napi::Function::New(env, JsCudaFree));
  exports.Set("cudaCopyToDevice", Napi::Function::New(env, JsCudaCopyToDevice));
  exports.Set("cudaCopyToHost", Napi::Function::New(env, JsCudaCopyToHost));
  exports.Set("cudaMemset", Napi::Function::New(env, JsCudaMemset));
  exports.Set("cudaPointerInfo", Napi::Function::New(env, JsCudaPointerInfo));
  exports.Set("cufileDriverOpen", Napi::Function::New(env, JsCufileDriverOpen));
  exports.Set("cufileDriverClose", Napi::Function::New(env, JsCufileDriverClose));
  exports.Set("cufileHandleRegister", Napi::Function::New(env, JsCufileHandleRegister));
  exports.Set("cufileHandleDeregister", Napi::Function::New(env, JsCufileHandleDeregister));
  exports.Set("cufileBufRegister", Napi::Function::New(env, JsCufileBufRegister));
  exports.Set("cufileBufDeregister", Napi::Function::New(env, JsCufileBufDeregister));
  exports.Set("cufileIo", Napi::Function::New(env, JsCufileIo));
  exports.Set("addressOf", Napi::Function::New(env, JsAddressOf));
  exports.Set("hf3fsExtractMountPoint", Napi::Function::New(env, JsHf3fsExtractMountPoint));
  exports.Set("hf3fsIsHf3fs", Napi::Function::New(env, JsHf3fsIsHf3fs));
  exports.Set("hf3fsIovCreate", Napi::Function::New(env, JsHf3fsIovCreate));
  exports.Set("hf3fsIovDestroy", Napi::Function::New(env, JsHf3fsIovDestroy));
  exports.Set("hf3fsIorCreate", Napi::Function::New(env, JsHf3fsIorCreate));
  exports.Set("hf3fsIorDestroy", Napi::Function::New(env, JsHf3fsIorDestroy));
  exports.Set("hf3fsRegFd", Napi::Function::New(env, JsHf3fsRegFd));
  exports.Set("hf3fsDeregFd", Napi::Function::New(env, JsHf3fsDeregFd));
  exports.Set("hf3fsPrepIo", Napi::Function::New(env, JsHf3fsPrepIo));
  exports.Set("hf3fsSubmitIos", Napi::Function::New(env, JsHf3fsSubmitIos));
  exports.Set("hf3fsWaitForIos", Napi::Function::New(env, JsHf3fsWaitForIos));
  exports.Set("alignedBuffer", Napi::Function::New(env, JsAlignedBuffer));
  exports.Set("openFile", Napi::Function::New(env, JsOpenFile));
  exports.Set("readCached", Napi::Function::New(env, JsReadCached));
  exports.Set("constants", JsConstants(env));
  exports.Set("Pool", Pool::Init(env));
  InitCrc32c(env, exports);
  exports.Set("abiVersion", 1);
  return exports;
}

}  // namespace

NODE_API_MODULE(tierkit_native, Init)
