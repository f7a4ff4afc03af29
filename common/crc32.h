// CRC-32 (IEEE 802.3, the polynomial of zip and PNG) for detecting corrupted
// files. Not a cryptographic hash.
#ifndef ABLATE_COMMON_CRC32_H_
#define ABLATE_COMMON_CRC32_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ablate {

// Extends `crc` (0 for a fresh start) over `data`.
uint32_t Crc32(std::string_view data, uint32_t crc = 0);

}  // namespace ablate

#endif  // ABLATE_COMMON_CRC32_H_
