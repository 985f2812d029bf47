// The CRC32C functions' JavaScript face (see crc32c.h):
//   crc32c(view, crc = 0) → number          continues `crc` over the view's bytes
//   crc32cPortable(view, crc = 0) → number  the table version, for tests
//   crc32cBlocks(view, blockSize) → Uint32Array   one CRC per block of the view
//   crc32cFile(fd, offset, length, blockSize) → Promise<Uint32Array>
//       the same for a file's bytes, read and checksummed on libuv's threads
//   crc32cBlocksAsync(view, blockSize) → Promise<Uint32Array>
//       crc32cBlocks on a libuv thread (big reads: several run at once)
//   crc32cRead(fd, view, position, blockSize) → Promise<Uint32Array>
//       fills the view from the file and checksums each block right after reading
//       it, while its bytes are still in the CPU cache, on a libuv thread
//   crc32cImpl: "sse4.2+pclmul" | "sse4.2" | "armv8-crc" | "table"
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <napi.h>

#include "crc32c.h"
#include "crc32c_js.h"

namespace {

struct Bytes {
  const uint8_t *data;
  size_t length;
};

Napi::Error Invalid(Napi::Env env, const std::string &msg) {
  Napi::Error err = Napi::TypeError::New(env, msg);
  err.Value().Set("code", "INVALID");
  return err;
}

Bytes BytesOf(Napi::Env env, Napi::Value v) {
  if (!v.IsTypedArray() && !v.IsDataView()) throw Invalid(env, "expected an ArrayBufferView");
  // The raw info calls, not ArrayBuffer().Data(): that refuses views of a SharedArrayBuffer
  // (what pooled reads fill).
  void *data = nullptr;
  if (v.IsDataView()) {
    size_t length = 0;
    if (napi_get_dataview_info(env, v, &length, &data, nullptr, nullptr) != napi_ok) {
      throw Invalid(env, "could not read the DataView");
    }
    return {static_cast<const uint8_t *>(data), length};
  }
  napi_typedarray_type type;
  size_t count = 0;
  if (napi_get_typedarray_info(env, v, &type, &count, &data, nullptr, nullptr) != napi_ok) {
    throw Invalid(env, "could not read the typed array");
  }
  return {static_cast<const uint8_t *>(data), v.As<Napi::TypedArray>().ByteLength()};  // data: at the byte offset
}

double NonNegative(Napi::Env env, Napi::Value v, const char *what) {
  if (!v.IsNumber()) throw Invalid(env, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d))) {
    throw Invalid(env, std::string(what) + " must be a non-negative integer");
  }
  return d;
}

uint32_t InitialCrc(Napi::Env env, const Napi::CallbackInfo &info, size_t at) {
  if (info.Length() <= at || info[at].IsUndefined()) return 0;
  return static_cast<uint32_t>(NonNegative(env, info[at], "crc"));
}

Napi::Value JsCrc32c(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Bytes b = BytesOf(env, info[0]);
  return Napi::Number::New(env, tk::Crc32c(InitialCrc(env, info, 1), b.data, b.length));
}

Napi::Value JsCrc32cPortable(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Bytes b = BytesOf(env, info[0]);
  return Napi::Number::New(env, tk::Crc32cPortable(InitialCrc(env, info, 1), b.data, b.length));
}

size_t BlockSize(Napi::Env env, Napi::Value v) {
  double d = NonNegative(env, v, "blockSize");
  if (d < 1) throw Invalid(env, "blockSize must be at least 1");
  return static_cast<size_t>(d);
}

Napi::Value JsCrc32cBlocks(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Bytes b = BytesOf(env, info[0]);
  size_t block = BlockSize(env, info[1]);
  size_t count = (b.length + block - 1) / block;
  Napi::Uint32Array out = Napi::Uint32Array::New(env, count);
  for (size_t i = 0; i < count; i++) {
    size_t start = i * block;
    size_t len = b.length - start < block ? b.length - start : block;
    out[i] = tk::Crc32c(0, b.data + start, len);
  }
  return out;
}

// crc32cBlocks on a libuv thread; the view is kept alive until the job ends.
class BufferCrcs : public Napi::AsyncWorker {
 public:
  BufferCrcs(Napi::Env env, Napi::Value view, Bytes bytes, size_t block)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        keep_(Napi::Persistent(view)),
        bytes_(bytes),
        block_(block) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    size_t count = (bytes_.length + block_ - 1) / block_;
    crcs_.resize(count);
    for (size_t i = 0; i < count; i++) {
      size_t start = i * block_;
      size_t len = bytes_.length - start < block_ ? bytes_.length - start : block_;
      crcs_[i] = tk::Crc32c(0, bytes_.data + start, len);
    }
  }

  void OnOK() override {
    Napi::Uint32Array out = Napi::Uint32Array::New(Env(), crcs_.size());
    for (size_t i = 0; i < crcs_.size(); i++) out[i] = crcs_[i];
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Value> keep_;
  Bytes bytes_;
  size_t block_;
  std::vector<uint32_t> crcs_;
};

Napi::Value JsCrc32cBlocksAsync(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Bytes b = BytesOf(env, info[0]);
  size_t block = BlockSize(env, info[1]);
  BufferCrcs *job = new BufferCrcs(env, info[0], b, block);
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

// Fills a view from a file block by block, each block checksummed straight after its
// read: the check then costs a pass over cache-hot bytes, not another trip to memory.
class ReadCrcs : public Napi::AsyncWorker {
 public:
  ReadCrcs(Napi::Env env, Napi::Value view, Bytes bytes, int fd, uint64_t position, size_t block)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        keep_(Napi::Persistent(view)),
        bytes_(bytes),
        fd_(fd),
        position_(position),
        block_(block) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    uint8_t *out = const_cast<uint8_t *>(bytes_.data);
    size_t count = (bytes_.length + block_ - 1) / block_;
    crcs_.resize(count);
    for (size_t i = 0; i < count; i++) {
      size_t start = i * block_;
      size_t len = bytes_.length - start < block_ ? bytes_.length - start : block_;
      size_t got = 0;
      while (got < len) {
        ssize_t n = pread(fd_, out + start + got, len - got, static_cast<off_t>(position_ + start + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          errnum_ = errno;
          return SetError(std::string("pread: ") + strerror(errnum_));
        }
        if (n == 0) {
          errnum_ = EIO;
          return SetError("pread: the file ended before the range did");
        }
        got += static_cast<size_t>(n);
      }
      crcs_[i] = tk::Crc32c(0, out + start, len);
    }
  }

  void OnOK() override {
    Napi::Uint32Array out = Napi::Uint32Array::New(Env(), crcs_.size());
    for (size_t i = 0; i < crcs_.size(); i++) out[i] = crcs_[i];
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error &e) override {
    Napi::Object o = e.Value();
    o.Set("code", "ERRNO");
    o.Set("errno", errnum_);
    deferred_.Reject(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Value> keep_;
  Bytes bytes_;
  int fd_;
  uint64_t position_;
  size_t block_;
  int errnum_ = 0;
  std::vector<uint32_t> crcs_;
};

Napi::Value JsCrc32cRead(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Invalid(env, "fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Bytes b = BytesOf(env, info[1]);
  uint64_t position = static_cast<uint64_t>(NonNegative(env, info[2], "position"));
  size_t block = BlockSize(env, info[3]);
  ReadCrcs *job = new ReadCrcs(env, info[1], b, fd, position, block);
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

// Reads [offset, offset + length) of fd in pieces and checksums it per block, on a
// libuv thread: publishing a multi-gigabyte entry must not stall the event loop.
class FileCrcs : public Napi::AsyncWorker {
 public:
  FileCrcs(Napi::Env env, int fd, uint64_t offset, uint64_t length, size_t block)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        fd_(fd),
        offset_(offset),
        length_(length),
        block_(block) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    size_t count = static_cast<size_t>((length_ + block_ - 1) / block_);
    crcs_.assign(count, 0);
    // Whole blocks per read where they are small; a big block is read in 4 MiB pieces.
    const size_t piece = block_ < (4u << 20) ? ((4u << 20) / block_) * block_ : (4u << 20);
    std::vector<uint8_t> buf(static_cast<size_t>(piece < length_ ? piece : (length_ ? length_ : 1)));
    uint64_t done = 0;
    while (done < length_) {
      size_t want = static_cast<size_t>(length_ - done < buf.size() ? length_ - done : buf.size());
      size_t got = 0;
      while (got < want) {
        ssize_t n = pread(fd_, buf.data() + got, want - got, static_cast<off_t>(offset_ + done + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          errnum_ = errno;
          return SetError(std::string("pread: ") + strerror(errnum_));
        }
        if (n == 0) {
          errnum_ = EIO;
          return SetError("pread: the file ended before the range did");
        }
        got += static_cast<size_t>(n);
      }
      // Fold the piece into the blocks it covers (a piece never splits a small block).
      size_t at = 0;
      while (at < want) {
        uint64_t pos = done + at;
        size_t index = static_cast<size_t>(pos / block_);
        size_t inBlock = static_cast<size_t>(pos % block_);
        size_t take = block_ - inBlock < want - at ? block_ - inBlock : want - at;
        crcs_[index] = tk::Crc32c(crcs_[index], buf.data() + at, take);
        at += take;
      }
      done += want;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Uint32Array out = Napi::Uint32Array::New(env, crcs_.size());
    for (size_t i = 0; i < crcs_.size(); i++) out[i] = crcs_[i];
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error &e) override {
    Napi::Object o = e.Value();
    o.Set("code", "ERRNO");
    o.Set("errno", errnum_);
    deferred_.Reject(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  int fd_;
  uint64_t offset_;
  uint64_t length_;
  size_t block_;
  int errnum_ = 0;
  std::vector<uint32_t> crcs_;
};

Napi::Value JsCrc32cFile(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Invalid(env, "fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint64_t offset = static_cast<uint64_t>(NonNegative(env, info[1], "offset"));
  uint64_t length = static_cast<uint64_t>(NonNegative(env, info[2], "length"));
  size_t block = BlockSize(env, info[3]);
  FileCrcs *job = new FileCrcs(env, fd, offset, length, block);
  Napi::Promise p = job->Promise();
  job->Queue();
  return p;
}

}  // namespace

void InitCrc32c(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New(env, JsCrc32c));
  exports.Set("crc32cPortable", Napi::Function::New(env, JsCrc32cPortable));
  exports.Set("crc32cBlocks", Napi::Function::New(env, JsCrc32cBlocks));
  exports.Set("crc32cBlocksAsync", Napi::Function::New(env, JsCrc32cBlocksAsync));
  exports.Set("crc32cRead", Napi::Function::New(env, JsCrc32cRead));
  exports.Set("crc32cFile", Napi::Function::New(env, JsCrc32cFile));
  exports.Set("crc32cImpl", tk::Crc32cImpl());
}
