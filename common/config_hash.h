// Content hashes that name things by what they are: a job by its full
// RunConfig, so the same settings reached from different spec spellings get
// the same name (and can share results).
#ifndef ABLATE_COMMON_CONFIG_HASH_H_
#define ABLATE_COMMON_CONFIG_HASH_H_

#include <string>
#include <string_view>

#include "common/run_config.h"

namespace ablate {

// Lower-case hex SHA-256 (64 characters) of `bytes`.
std::string Sha256Hex(std::string_view bytes);

// Sha256Hex of config.ToJson().dump(): the canonical JSON (every field
// present but the ones ToJson leaves out at their default, keys sorted,
// numbers in shortest round-trip form), so key order,
// shorthand names and float spelling in a spec do not change it, while any
// setting that differs does. Strings that are not valid UTF-8 (which no
// parsed config holds) are hashed with U+FFFD in place of the bad bytes
// rather than throwing.
std::string ConfigHash(const RunConfig& config);

}  // namespace ablate

#endif  // ABLATE_COMMON_CONFIG_HASH_H_
