// Registers the CRC32C functions on the addon's exports (crc32c_js.cc).
#pragma once

#include <napi.h>

void InitCrc32c(Napi::Env env, Napi::Object exports);
