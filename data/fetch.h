// Downloading text8: fetch the published zip once per machine, unpack the
// `text8` member, verify it and keep it in a cache directory.
#ifndef ABLATE_DATA_FETCH_H_
#define ABLATE_DATA_FETCH_H_

#include <cstdint>
#include <functional>
#include <string>

#include "common/run_config.h"
#include "common/status.h"
#include "data/text8.h"

namespace ablate::text8 {

struct FetchOptions {
  // Cache directory; created when missing if its parent exists.
  std::string data_dir;
  std::string url = kText8Url;
  // The size `text8` must have.
  uint64_t expected_bytes = kText8Bytes;
  // Give up when connecting takes longer than this.
  long connect_timeout_s = 30;
  // Give up when fewer than 1,000 bytes a second arrive for this long.
  long stall_timeout_s = 60;
};

// Called during the download with the bytes received so far and the total
// (0 while the server has not said). Called often: throttle in the callback.
using ProgressFn = std::function<void(uint64_t received, uint64_t total)>;

// Names of the files EnsureText8 keeps in data_dir.
inline constexpr const char* kText8FileName = "text8";
inline constexpr const char* kText8ZipFileName = "text8.zip";
// Written after `text8` has been verified; holds its size in decimal.
inline constexpr const char* kText8MarkerFileName = "text8.verified";

// Returns the path of a verified `text8` in options.data_dir, doing only as
// much work as needed, in this order:
//  1. `text8` with a marker and the expected size: returned at once.
//  2. `text8` of the expected size without a marker (copied in by hand):
//     verified in place (a full scan) and adopted.
//  3. `text8.zip` kept from an earlier download: unpacked and verified.
//  4. Otherwise the zip is downloaded from options.url (redirects followed),
//     unpacked and verified.
// Verified means: the archive has a member named `text8`, of exactly
// expected_bytes bytes, all a-z or space. Files appear in data_dir only by
// atomic rename once verified; a failure leaves no new file there (a bad
// cached zip is removed). Errors name the URL, the HTTP status, the directory
// or what failed verification. Processes sharing data_dir may call it at once.
// `progress` may be empty.
StatusOr<std::string> EnsureText8(const FetchOptions& options, const ProgressFn& progress);

}  // namespace ablate::text8

namespace ablate {

// The directory `corpus: text8` is cached in when no --data-dir is given:
// $ABLATE_DATA_DIR, else ./data.
std::string DefaultDataDir();

// Resolves config.data to a file this machine can read: data.path as is, or
// the cached text8 (downloaded on first use) under `data_dir`.
StatusOr<std::string> ResolveCorpus(const DataConfig& data, const std::string& data_dir);

}  // namespace ablate

#endif  // ABLATE_DATA_FETCH_H_
