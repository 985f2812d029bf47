// CRC32C, see crc32c.h.
//
// The hardware paths run three independent CRC streams over three adjacent
// stripes of a buffer: one crc32 instruction has a latency of about three cycles
// but a throughput of one per cycle, so a single dependent chain leaves two thirds
// of the unit idle. The three partial CRCs are then joined by multiplying by
// x^(8*stripe) modulo the polynomial (the CRC of A followed by B is the CRC of A
// shifted over |B| zero bytes, xored with the CRC of B from zero).
#include "crc32c.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#include <wmmintrin.h>
#define TK_CRC_X86 1
#elif defined(__aarch64__)
#include <arm_acle.h>
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
#define TK_CRC_ARM 1
#endif

namespace tk {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

// Eight tables for the portable version: table[k][b] is the register after byte b
// followed by k zero bytes, so eight bytes are folded per step.
struct Tables {
  uint32_t t[8][256];
  Tables() {
    for (uint32_t b = 0; b < 256; b++) {
      uint32_t r = b;
      for (int i = 0; i < 8; i++) r = (r >> 1) ^ (kPoly & (0u - (r & 1u)));
      t[0][b] = r;
    }
    for (uint32_t b = 0; b < 256; b++) {
      for (int k = 1; k < 8; k++) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFF];
    }
  }
};

const Tables &tables() {
  static const Tables tabs;
  return tabs;
}

uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);  // unaligned-safe; little-endian on every target we build
  return v;
}

// The raw register update (no pre/post inversion).
uint32_t portableRaw(uint32_t r, const uint8_t *p, size_t n) {
  const Tables &T = tables();
  while (n >= 8) {
    uint64_t v = load64(p) ^ r;
    r = T.t[7][v & 0xFF] ^ T.t[6][(v >> 8) & 0xFF] ^ T.t[5][(v >> 16) & 0xFF] ^ T.t[4][(v >> 24) & 0xFF] ^
        T.t[3][(v >> 32) & 0xFF] ^ T.t[2][(v >> 40) & 0xFF] ^ T.t[1][(v >> 48) & 0xFF] ^ T.t[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) r = (r >> 8) ^ T.t[0][(r ^ *p++) & 0xFF];
  return r;
}

// a * b modulo the polynomial, both in the reflected representation (bit 31 is x^0).
uint32_t mulMod(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 31; i >= 0; i--) {
    if (a & (1u << i)) product ^= b;
    // b := b * x
    b = (b >> 1) ^ (kPoly & (0u - (b & 1u)));
  }
  return product;
}

// x^e modulo the polynomial.
uint32_t xPow(uint64_t e) {
  uint32_t result = 1u << 31;  // x^0
  uint32_t square = 1u << 30;  // x^1, squared up through x^(2^k)
  while (e) {
    if (e & 1) result = mulMod(result, square);
    square = mulMod(square, square);
    e >>= 1;
  }
  return result;
}

// x^(8 * bytes) modulo the polynomial.
uint32_t shiftFactor(size_t bytes) { return xPow(static_cast<uint64_t>(bytes) * 8); }

// Stripe length of the three-way hardware loop, and the factor that shifts a CRC over it.
constexpr size_t kStripe = 4096;
uint32_t stripeFactor() {
  static const uint32_t f = shiftFactor(kStripe);
  return f;
}

#if defined(TK_CRC_X86)
__attribute__((target("sse4.2"))) uint32_t hwRaw(uint32_t r, const uint8_t *p, size_t n) {
  const uint32_t factor = stripeFactor();
  while (n >= 3 * kStripe) {
    uint64_t a = r, b = 0, c = 0;
    const uint8_t *pa = p, *pb = p + kStripe, *pc = p + 2 * kStripe;
    for (size_t i = 0; i < kStripe; i += 8) {
      a = _mm_crc32_u64(a, load64(pa + i));
      b = _mm_crc32_u64(b, load64(pb + i));
      c = _mm_crc32_u64(c, load64(pc + i));
    }
    r = mulMod(mulMod(static_cast<uint32_t>(a), factor) ^ static_cast<uint32_t>(b), factor) ^
        static_cast<uint32_t>(c);
    p += 3 * kStripe;
    n -= 3 * kStripe;
  }
  uint64_t r64 = r;
  while (n >= 8) {
    r64 = _mm_crc32_u64(r64, load64(p));
    p += 8;
    n -= 8;
  }
  r = static_cast<uint32_t>(r64);
  while (n--) r = _mm_crc32_u8(r, *p++);
  return r;
}

// Carry-less multiplication folding, for CPUs whose crc32 instruction issues only every
// few cycles (AMD Zen 1/2 among them, where the three streams above gain little). Four
// 16-byte lanes advance 64 bytes per step: a lane A whose bytes lie D bytes before the
// lane it is folded into contributes A·x^(8D), computed as L·(x^(64+8D) mod P) xor
// H·(x^(8D) mod P) for its two 8-byte halves L and H. Lanes hold the bytes as loaded,
// so each half is its polynomial bit-reversed and a product comes out one bit high:
// the constants are taken one power lower. The last lane and the tail then go through
// the crc32 instruction from zero, which reduces them modulo P.
struct FoldKeys {
  __m128i k64, k48, k32, k16;  // fold distances in bytes
};

// The pair (x^(64+8D-1), x^(8D-1)) mod P, each as a bit-reversed 64-bit operand.
__m128i foldKey(unsigned distance) {
  uint64_t hi = static_cast<uint64_t>(xPow(64 + 8 * distance - 1)) << 32;
  uint64_t lo = static_cast<uint64_t>(xPow(8 * distance - 1)) << 32;
  return _mm_set_epi64x(static_cast<long long>(lo), static_cast<long long>(hi));
}

const FoldKeys &foldKeys() {
  static const FoldKeys keys = {foldKey(64), foldKey(48), foldKey(32), foldKey(16)};
  return keys;
}

__attribute__((target("sse4.2,pclmul"))) inline __m128i fold(__m128i lane, __m128i key) {
  return _mm_xor_si128(_mm_clmulepi64_si128(lane, key, 0x00), _mm_clmulepi64_si128(lane, key, 0x11));
}

__attribute__((target("sse4.2,pclmul"))) uint32_t clmulRaw(uint32_t r, const uint8_t *p, size_t n) {
  if (n < 256) return hwRaw(r, p, n);
  const FoldKeys &K = foldKeys();
  auto load = [](const uint8_t *q) { return _mm_loadu_si128(reinterpret_cast<const __m128i *>(q)); };
  // The register enters as the first four message bytes xored with it.
  __m128i x0 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(r)));
  __m128i x1 = load(p + 16), x2 = load(p + 32), x3 = load(p + 48);
  p += 64;
  n -= 64;
  while (n >= 64) {
    x0 = _mm_xor_si128(fold(x0, K.k64), load(p));
    x1 = _mm_xor_si128(fold(x1, K.k64), load(p + 16));
    x2 = _mm_xor_si128(fold(x2, K.k64), load(p + 32));
    x3 = _mm_xor_si128(fold(x3, K.k64), load(p + 48));
    p += 64;
    n -= 64;
  }
  __m128i x = _mm_xor_si128(_mm_xor_si128(fold(x0, K.k48), fold(x1, K.k32)), _mm_xor_si128(fold(x2, K.k16), x3));
  uint8_t last[16];
  _mm_storeu_si128(reinterpret_cast<__m128i *>(last), x);
  uint64_t a, b;
  memcpy(&a, last, 8);
  memcpy(&b, last + 8, 8);
  uint32_t out = static_cast<uint32_t>(_mm_crc32_u64(_mm_crc32_u64(0, a), b));
  return hwRaw(out, p, n);
}

bool hwAvailable() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx & bit_SSE4_2) != 0;
}

bool clmulAvailable() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx & bit_SSE4_2) != 0 && (ecx & bit_PCLMUL) != 0;
}
const char *const kHwName = "sse4.2";
const char *const kClmulName = "sse4.2+pclmul";
#elif defined(TK_CRC_ARM)
__attribute__((target("+crc"))) uint32_t hwRaw(uint32_t r, const uint8_t *p, size_t n) {
  const uint32_t factor = stripeFactor();
  while (n >= 3 * kStripe) {
    uint32_t a = r, b = 0, c = 0;
    const uint8_t *pa = p, *pb = p + kStripe, *pc = p + 2 * kStripe;
    for (size_t i = 0; i < kStripe; i += 8) {
      a = __crc32cd(a, load64(pa + i));
      b = __crc32cd(b, load64(pb + i));
      c = __crc32cd(c, load64(pc + i));
    }
    r = mulMod(mulMod(a, factor) ^ b, factor) ^ c;
    p += 3 * kStripe;
    n -= 3 * kStripe;
  }
  while (n >= 8) {
    r = __crc32cd(r, load64(p));
    p += 8;
    n -= 8;
  }
  while (n--) r = __crc32cb(r, *p++);
  return r;
}

bool hwAvailable() { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
const char *const kHwName = "armv8-crc";
#endif

using RawFn = uint32_t (*)(uint32_t, const uint8_t *, size_t);

RawFn pick() {
#if defined(TK_CRC_X86) || defined(TK_CRC_ARM)
  // TIERKIT_CRC32C=portable forces the table version (tests run every version).
  const char *force = getenv("TIERKIT_CRC32C");
  bool portable = force && strcmp(force, "portable") == 0;
#if defined(TK_CRC_X86)
  // TIERKIT_CRC32C=sse4.2: the crc32 instruction alone (tests run it too).
  bool noFold = force && strcmp(force, "sse4.2") == 0;
  if (!portable && !noFold && clmulAvailable()) return clmulRaw;
#endif
  if (!portable && hwAvailable()) return hwRaw;
#endif
  return portableRaw;
}

RawFn chosen() {
  static const RawFn fn = pick();
  return fn;
}

}  // namespace

uint32_t Crc32c(uint32_t crc, const uint8_t *p, size_t n) { return ~chosen()(~crc, p, n); }

uint32_t Crc32cPortable(uint32_t crc, const uint8_t *p, size_t n) { return ~portableRaw(~crc, p, n); }

const char *Crc32cImpl() {
#if defined(TK_CRC_X86)
  if (chosen() == clmulRaw) return kClmulName;
#endif
#if defined(TK_CRC_X86) || defined(TK_CRC_ARM)
  if (chosen() == hwRaw) return kHwName;
#endif
  return "table";
}

}  // namespace tk
