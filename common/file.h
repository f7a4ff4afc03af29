// Files written whole or not at all, and the Status of a failed system call.
#ifndef ABLATE_COMMON_FILE_H_
#define ABLATE_COMMON_FILE_H_

#include <string>
#include <string_view>

#include "common/status.h"

namespace ablate {

// A file written under a temporary name in the directory of its final path and
// renamed there by Commit(), so readers see the old file or the whole new one.
// Destroying it uncommitted removes the temporary file. Move-only.
class AtomicFile {
 public:
  // Fails, naming the directory, when it is missing or not writable.
  static StatusOr<AtomicFile> Create(const std::string& path);

  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&& other) noexcept;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  Status Append(std::string_view data);
  // Flushes to disk, renames onto the final path and syncs the directory.
  Status Commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  AtomicFile(std::string path, std::string temp_path, int fd);
  void Discard();

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;  // -1 once committed or discarded
};

// The Status for a failed system call: "<what>: <strerror(errnum)>", with the
// code that fits errnum (NotFound, PermissionDenied, else Unavailable).
Status ErrnoStatus(const std::string& what, int errnum);

}  // namespace ablate

#endif  // ABLATE_COMMON_FILE_H_
