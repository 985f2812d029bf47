// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum tier-fs keeps
// per cached block. Hardware instructions where the CPU has them (PCLMULQDQ and SSE4.2
// on x86-64, the ARMv8 CRC extension on arm64), chosen once at run time; a
// table-driven version everywhere else.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace tk {

// Continues the CRC32C `crc` (0 to start) over `n` bytes at `p`: the result is the
// finished CRC32C of everything seen so far, so a buffer may be fed in pieces.
uint32_t Crc32c(uint32_t crc, const uint8_t *p, size_t n);

// The portable version alone (tests compare the two).
uint32_t Crc32cPortable(uint32_t crc, const uint8_t *p, size_t n);

// Which implementation Crc32c uses here: "sse4.2+pclmul" (carry-less multiply folding,
// then crc32), "sse4.2", "armv8-crc" or "table".
const char *Crc32cImpl();

}  // namespace tk
